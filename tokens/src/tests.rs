use super::*;
use proptest::prelude::*;

fn encodings() -> [(&'static str, &'static Encoding); 2] {
    [("o200k_base", o200k_base()), ("cl100k_base", cl100k_base())]
}

/// Random bytes made text as a client would send them (invalid UTF-8 replaced).
fn random_text(seed: u64, len: usize) -> String {
    let mut state = seed;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn corpus() -> Vec<String> {
    vec![
        "The quick brown fox jumps over the lazy dog. It's 3:45pm; we'll see—won't we? I'M SURE HE'D".repeat(40),
        "fn main() {\n    let v: Vec<u64> = (0..10).map(|i| i * i).collect();\n    println!(\"{v:?}\");\n}\n".repeat(30),
        "日本語のテキストと中文文本和한국어 텍스트, mixed with English. ".repeat(40),
        "🚀🔥👍🏽 emoji: 👨‍👩‍👧‍👦 family, 🇫🇷 flag ✨✨✨ ".repeat(40),
        "Ünïcödé: café naïve Ωμέγα привет мир 123456789 ١٢٣ ".repeat(40),
        "a".repeat(20_000),
        "x".repeat(7_777) + &"ab".repeat(5_000),
        "https://example.com/a/very/long/path?with=query&and=more&".repeat(100),
        "\t\n  \n\n   spaces   and\ttabs \r\n".repeat(50),
        "   trailing spaces   ".into(),
        "\u{a0}\u{2003} unicode spaces\u{3000}end \u{85}".into(),
        String::new(),
        random_text(1, 20_000),
        random_text(2, 5_000),
    ]
}

#[test]
fn counts_equal_openais_tiktoken_on_a_corpus() {
    // tiktoken-rs embeds OpenAI's own tables and splits text as OpenAI's tiktoken does.
    let tiktoken = [
        tiktoken_rs::o200k_base_singleton(),
        tiktoken_rs::cl100k_base_singleton(),
    ];
    for text in corpus() {
        for ((name, encoding), reference) in encodings().into_iter().zip(&tiktoken) {
            assert_eq!(
                encoding.count(&text),
                reference.encode_ordinary(&text).len(),
                "{name}: {:?}...",
                text.chars().take(40).collect::<String>()
            );
        }
    }
}

#[test]
fn one_token_of_the_vocabulary_counts_one() {
    for (name, encoding) in encodings() {
        for word in [" the", "ing", "Hello", " world", "\n\n"] {
            assert_eq!(encoding.count(word), 1, "{name}: {word:?}");
        }
    }
}

#[test]
fn threads_count_alike() {
    let texts = corpus();
    let expected: Vec<usize> = texts.iter().map(|t| o200k_base().count(t)).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..3 {
                    let counted: Vec<usize> = texts.iter().map(|t| o200k_base().count(t)).collect();
                    assert_eq!(counted, expected);
                }
            });
        }
    });
}

/// Text from the characters the patterns tell apart: letters of each case and script,
/// combining marks, digits of several scripts, apostrophe suffixes, punctuation, slashes and
/// every kind of whitespace.
fn text_strategy() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "a", "Z", "é", "É", "ǅ", "ß", "ʰ", "中", "한", "カ", "\u{301}", "\u{93f}", "0", "7", "٣",
        "½", "'s", "'T", "'re", "'LL", "'", "’", ".", ",", "!", "?", "/", "-", "_", "$", "🚀",
        "👍🏽", "\u{200d}", " ", "  ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{3000}", "\u{85}",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|atoms| atoms.concat())
}

proptest! {
    #[test]
    fn counts_equal_bpe_openais_own(text in text_strategy()) {
        prop_assert_eq!(o200k_base().count(&text), bpe_openai::o200k_base().count(text.as_str()));
        prop_assert_eq!(cl100k_base().count(&text), bpe_openai::cl100k_base().count(text.as_str()));
    }

    #[test]
    fn counts_equal_tiktoken(text in text_strategy()) {
        prop_assert_eq!(
            o200k_base().count(&text),
            tiktoken_rs::o200k_base_singleton().encode_ordinary(&text).len()
        );
        prop_assert_eq!(
            cl100k_base().count(&text),
            tiktoken_rs::cl100k_base_singleton().encode_ordinary(&text).len()
        );
    }
}

/// Text mostly of ASCII — every ASCII character, the contractions in both cases, runs of
/// spaces and line breaks — with a few wider characters that could continue an ASCII run: a
/// letter, a combining mark, the long s (a case fold of `s`), a no-break space, a digit, a dash.
fn ascii_text_strategy() -> impl Strategy<Value = String> {
    let ascii = (0u8..128).prop_map(|byte| char::from(byte).to_string());
    let atoms = prop::sample::select(vec![
        "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'r", "'l", "  ", "   ",
        "\r\n", "\n\n", " \n ", "//", "abc", "ABC", "Abc", "123", "1234", " x", " .", "é",
        "\u{301}", "ſ", "\u{a0}", "٣", "—", "中",
    ])
    .prop_map(str::to_string);
    prop::collection::vec(prop_oneof![3 => ascii, 2 => atoms], 0..40)
        .prop_map(|atoms| atoms.concat())
}

fn pieces<'t>(encoding: &Encoding, text: &'t str) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    encoding.pretokenizer.for_each_piece(text, |piece| {
        pieces.push(std::str::from_utf8(piece).expect("pieces end on character boundaries"))
    });
    pieces
}

#[test]
fn ascii_pieces_equal_the_regexs_on_the_corpus() {
    for text in corpus() {
        for (name, encoding) in encodings() {
            assert_eq!(
                pieces(encoding, &text),
                encoding.pretokenizer.regex_pieces(&text),
                "{name}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// The hand-written ASCII path splits exactly as the regex does.
    #[test]
    fn ascii_pieces_equal_the_regexs(text in ascii_text_strategy()) {
        for (name, encoding) in encodings() {
            prop_assert_eq!(
                pieces(encoding, &text),
                encoding.pretokenizer.regex_pieces(&text),
                "{}", name
            );
        }
    }
}
