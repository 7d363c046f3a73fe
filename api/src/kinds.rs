//! Dispatch from a [`Kind`](sdc_docker_store::Kind) known only at run time
//! (a URL segment, a document's `kind:`) to code generic over
//! [`Resource`](sdc_docker_store::Resource).
//!
//! A macro rather than a function because each arm instantiates the generic
//! code with another type, and async code awaited in each arm yields futures
//! of different types; the macro writes the `match` out in place.

/// Run `$body` with the type alias `$k` bound to the struct of `$kind`.
///
/// ```ignore
/// let n = with_kind!(kind, K => count::<K>(&store).await)?;
/// ```
///
/// `$body` may `.await` and use `?`: it is expanded inside each arm of a
/// `match` in the caller's own function.
#[macro_export]
macro_rules! with_kind {
    ($kind:expr, $k:ident => $body:expr) => {{
        #[allow(unused_imports)]
        use $crate::__store::Resource as _;
        use $crate::__store::model as __model;
        match $kind {
            $crate::__store::Kind::Container => {
                type $k = __model::Container;
                $body
            }
            $crate::__store::Kind::Image => {
                type $k = __model::Image;
                $body
            }
            $crate::__store::Kind::Network => {
                type $k = __model::Network;
                $body
            }
            $crate::__store::Kind::Volume => {
                type $k = __model::Volume;
                $body
            }
            $crate::__store::Kind::Node => {
                type $k = __model::Node;
                $body
            }
            $crate::__store::Kind::Package => {
                type $k = __model::Package;
                $body
            }
        }
    }};
}
