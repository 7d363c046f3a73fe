//! Docker's generated container names: `adjective_surname`, such as
//! `focused_turing`, drawn from the same two lists as moby's
//! `internal/namesgenerator` (formerly `pkg/namesgenerator`) so that a
//! container created without `--name` looks as it would under Docker.
//!
//! The names are random, not unique: the caller creates the Container and,
//! when the name is taken, asks again with [`generate_with_retry`], which
//! appends a digit the way moby's daemon does on its retries.

use rand::Rng;

/// The one combination moby never hands out: Steve Wozniak is not boring.
const EXCLUDED: &str = "boring_wozniak";

/// A random `adjective_surname` name, never `boring_wozniak`.
pub fn generate() -> String {
    let mut rng = rand::rng();
    loop {
        let left = LEFT[rng.random_range(0..LEFT.len())];
        let right = RIGHT[rng.random_range(0..RIGHT.len())];
        let name = format!("{left}_{right}");
        if name != EXCLUDED {
            return name;
        }
    }
}

/// A name for the `retry`th attempt: attempt 0 is [`generate`]'s plain
/// name; later attempts append one random digit (`focused_turing3`), as
/// moby's `GetRandomName(retry)` does, to make a collision less likely.
pub fn generate_with_retry(retry: u32) -> String {
    let name = generate();
    if retry == 0 {
        return name;
    }
    let digit = rand::rng().random_range(0..10u8);
    format!("{name}{digit}")
}

/// The adjectives, moby's `left`.
const LEFT: [&str; 108] = [
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

/// Notable scientists and hackers, moby's `right`.
const RIGHT: [&str; 236] = [
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "antonelli",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "banzai",
    "bardeen",
    "bartik",
    "bassi",
    "beaver",
    "bell",
    "benz",
    "bhabha",
    "bhaskara",
    "black",
    "blackburn",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "bouman",
    "boyd",
    "brahmagupta",
    "brattain",
    "brown",
    "buck",
    "burnell",
    "cannon",
    "carson",
    "cartwright",
    "carver",
    "cerf",
    "chandrasekhar",
    "chaplygin",
    "chatelet",
    "chatterjee",
    "chaum",
    "chebyshev",
    "clarke",
    "cohen",
    "colden",
    "cori",
    "cray",
    "curie",
    "curran",
    "darwin",
    "davinci",
    "dewdney",
    "dhawan",
    "diffie",
    "dijkstra",
    "dirac",
    "driscoll",
    "dubinsky",
    "easley",
    "edison",
    "einstein",
    "elbakyan",
    "elgamal",
    "elion",
    "ellis",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "feistel",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "gagarin",
    "galileo",
    "galois",
    "ganguly",
    "gates",
    "gauss",
    "germain",
    "goldberg",
    "goldstine",
    "goldwasser",
    "golick",
    "goodall",
    "gould",
    "greider",
    "grothendieck",
    "haibt",
    "hamilton",
    "haslett",
    "hawking",
    "heisenberg",
    "hellman",
    "hermann",
    "herschel",
    "hertz",
    "heyrovsky",
    "hodgkin",
    "hofstadter",
    "hoover",
    "hopper",
    "hugle",
    "hypatia",
    "ishizaka",
    "jackson",
    "jang",
    "jemison",
    "jennings",
    "jepsen",
    "johnson",
    "joliot",
    "jones",
    "kalam",
    "kapitsa",
    "kare",
    "keldysh",
    "keller",
    "kepler",
    "khayyam",
    "khorana",
    "kilby",
    "kirch",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lederberg",
    "lehmann",
    "lewin",
    "lichterman",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "margulis",
    "matsumoto",
    "maxwell",
    "mayer",
    "mccarthy",
    "mcclintock",
    "mclaren",
    "mclean",
    "mcnulty",
    "meitner",
    "mendel",
    "mendeleev",
    "meninsky",
    "merkle",
    "mestorf",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "moser",
    "murdock",
    "napier",
    "nash",
    "neumann",
    "newton",
    "nightingale",
    "nobel",
    "noether",
    "northcutt",
    "noyce",
    "panini",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "poitras",
    "proskuriakova",
    "ptolemy",
    "raman",
    "ramanujan",
    "rhodes",
    "ride",
    "ritchie",
    "robinson",
    "roentgen",
    "rosalind",
    "rubin",
    "saha",
    "sammet",
    "sanderson",
    "satoshi",
    "shamir",
    "shannon",
    "shaw",
    "shirley",
    "shockley",
    "shtern",
    "sinoussi",
    "snyder",
    "solomon",
    "spence",
    "stonebraker",
    "sutherland",
    "swanson",
    "swartz",
    "swirles",
    "taussig",
    "tesla",
    "tharp",
    "thompson",
    "torvalds",
    "tu",
    "turing",
    "varahamihira",
    "vaughan",
    "villani",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "wilbur",
    "wiles",
    "williams",
    "williamson",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "wu",
    "yalow",
    "yonath",
    "zhukovsky",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_name_is_an_adjective_and_a_surname_from_dockers_lists() {
        for _ in 0..200 {
            let name = generate();
            let (left, right) = name.split_once('_').expect("an underscore");
            assert!(LEFT.contains(&left), "{name}");
            assert!(RIGHT.contains(&right), "{name}");
            assert!(!name.chars().any(|c| c.is_ascii_digit()), "{name}");
        }
    }

    #[test]
    fn the_lists_are_mobys_sorted_and_without_duplicates() {
        assert_eq!(LEFT.len(), 108);
        assert_eq!(RIGHT.len(), 236);
        assert!(LEFT.windows(2).all(|w| w[0] < w[1]));
        assert!(RIGHT.windows(2).all(|w| w[0] < w[1]));
        assert!(LEFT.contains(&"boring") && RIGHT.contains(&"wozniak"));
    }

    #[test]
    fn boring_wozniak_is_never_generated() {
        // 1 in 25,488 per draw: enough draws that it would show up if the
        // exclusion were missing (about 98% of the time for 100,000).
        assert!((0..100_000).all(|_| generate() != EXCLUDED));
    }

    #[test]
    fn a_generated_name_is_a_valid_docker_name() {
        for _ in 0..200 {
            assert!(super::super::valid_name(&generate_with_retry(3)));
        }
    }

    #[test]
    fn a_retry_appends_one_digit() {
        for retry in 1..20 {
            let name = generate_with_retry(retry);
            let digit = name.chars().last().expect("not empty");
            assert!(digit.is_ascii_digit(), "{name}");
            let stem = &name[..name.len() - 1];
            assert!(!stem.chars().any(|c| c.is_ascii_digit()), "{name}");
            assert!(stem.contains('_'), "{name}");
        }
    }

    #[test]
    fn the_first_attempt_has_no_digit() {
        let name = generate_with_retry(0);
        assert!(!name.chars().any(|c| c.is_ascii_digit()), "{name}");
    }
}
