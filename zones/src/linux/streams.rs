//! [`ZoneStreams`] for the linux driver: attach and resize through the
//! zone's monitor, exec with the OCI runtime (`runc exec`), logs from the
//! monitor's json-file log, stats from the zone's cgroups and network
//! namespace, files through the zone's mounted root file system.

use super::LinuxDriver;
use super::{exec, files, logs, stats};
use crate::driver::ZoneError;
use crate::streams::{
    AttachOptions, ByteStream, Change, ExecProcess, ExecSpec, ExtractOptions, LogOptions,
    LogStream, PathStat, Session, ZoneStats, ZoneStreams,
};

#[async_trait::async_trait]
impl ZoneStreams for LinuxDriver {
    async fn attach(&self, id: &str, options: AttachOptions) -> Result<Session, ZoneError> {
        exec::attach(self, id, options).await
    }

    async fn resize(&self, id: &str, height: u16, width: u16) -> Result<(), ZoneError> {
        exec::resize(self, id, height, width).await
    }

    async fn exec(&self, id: &str, spec: &ExecSpec) -> Result<ExecProcess, ZoneError> {
        exec::exec(self, id, spec).await
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<LogStream, ZoneError> {
        logs::logs(self, id, options).await
    }

    async fn stats(&self, id: &str) -> Result<ZoneStats, ZoneError> {
        stats::stats(self, id).await
    }

    async fn stat_path(&self, id: &str, path: &str) -> Result<PathStat, ZoneError> {
        files::stat_path(self, id, path).await
    }

    async fn archive(&self, id: &str, path: &str) -> Result<(PathStat, ByteStream), ZoneError> {
        files::archive(self, id, path).await
    }

    async fn extract(
        &self,
        id: &str,
        path: &str,
        tar: ByteStream,
        options: ExtractOptions,
    ) -> Result<(), ZoneError> {
        files::extract(self, id, path, tar, options).await
    }

    async fn changes(&self, id: &str) -> Result<Vec<Change>, ZoneError> {
        files::changes(self, id).await
    }

    async fn export(&self, id: &str) -> Result<ByteStream, ZoneError> {
        files::export(self, id).await
    }
}
