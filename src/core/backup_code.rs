//! The format of one-time backup codes: generating them, their check character, normalising what
//! people type, and parsing it back to a canonical code.
//!
//! This module owns only the *shape* of a code. It must never hash, store, log or print one:
//! hashing and storage live elsewhere, and [`BackupCode`]'s `Debug` is redacted so a stray `{:?}`
//! or `dbg!` cannot leak a code. Buffers that hold a code are zeroized when dropped.
//!
//! # Format
//!
//! A code is 16 symbols of Crockford's base32 alphabet, shown in lower case as
//! `0123456789abcdefghjkmnpqrstvwxyz`. Crockford drops `i`, `l`, `o` and `u` because the first
//! three are confused with `1` and `0` and `u` invites accidental obscenities; on input we accept
//! `o` as `0` and `i`/`l` as `1` so a misread look-alike still works. Fifteen symbols are random
//! (75 bits, above the 64 bits NIST SP 800-63B asks of look-up secrets) and the sixteenth is a
//! check symbol. People see four groups of four, `k7p2-9xqm-b4ct-8hzr`, because short groups are
//! easier to copy from paper; separators, spaces and case carry no meaning.
//!
//! # Check symbol
//!
//! The check symbol exists so that a typo can be reported as a typo *before* the code is hashed
//! and compared, letting callers tell a slip of the finger from a wrong code. We treat each
//! symbol as an element of GF(2^5), built with the primitive polynomial x^5 + x^2 + 1, and use
//! the generator alpha = 2:
//!
//! ```text
//! check = v_0·alpha^1 + v_1·alpha^2 + … + v_14·alpha^15      (+ is XOR in GF(2^5))
//! ```
//!
//! Equivalently, a code is valid when the weighted sum over all sixteen symbols is zero, with the
//! check symbol weighted alpha^0 = 1. Because alpha is primitive it has order 31, so the sixteen
//! weights alpha^0 … alpha^15 are distinct and non-zero. That gives the two guarantees we want:
//!
//! * changing one symbol by a non-zero e changes the sum by e·w, and a product of non-zero field
//!   elements is non-zero, so **every single substitution is detected**;
//! * swapping unequal symbols a, b at positions with weights w1 ≠ w2 changes the sum by
//!   (a + b)(w1 + w2) ≠ 0, so **every transposition is detected**, adjacent ones included.
//!
//! A mod-32 sum (or a plain XOR) would miss transpositions, and a mod-32 weighted sum would miss
//! substitutions whenever the weight shares a factor with 32; a prime field of size 32 does not
//! exist, so the extension field GF(32) is the natural choice for a 32-symbol alphabet.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::core::entropy::Entropy;

/// Random symbols in a code (75 bits of entropy).
pub const DATA_SYMBOLS: usize = 15;
/// Symbols in a code including the check symbol.
pub const CODE_SYMBOLS: usize = 16;
/// The expected format, as shown to users.
pub const FORMAT_HINT: &str = "xxxx-xxxx-xxxx-xxxx";

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const GROUP_SIZE: usize = 4;
const DISPLAY_LEN: usize = CODE_SYMBOLS + CODE_SYMBOLS / GROUP_SIZE - 1;

/// Beyond this, nobody is typing a code: refuse before decoding anything. Generous enough for a
/// code pasted with odd spacing.
const MAX_INPUT_BYTES: usize = 256;

/// Below this many symbols the input could still be a (6–8 digit) TOTP code.
const MIN_SYMBOLS_TO_LOOK_LIKE_A_CODE: usize = 8;
/// HOTP/TOTP truncation yields a 31-bit number, so no one-time password has more digits than
/// this; a longer all-digit input can only be a backup code (about 1 in 10^8 codes has no letter).
const MAX_OTP_DIGITS: usize = 10;
/// Symbol values of the letters: everything after `0`–`9` in the alphabet.
const FIRST_LETTER_VALUE: u8 = 10;

const NOT_A_SYMBOL: u8 = 0xff;

/// Byte -> symbol value, folding case and look-alikes. 256 entries so any byte indexes it without
/// a bounds check that could panic.
const DECODE: [u8; 256] = build_decode_table();

const fn build_decode_table() -> [u8; 256] {
    let mut table = [NOT_A_SYMBOL; 256];
    let mut value = 0;
    while value < ALPHABET.len() {
        let symbol = ALPHABET[value];
        table[symbol as usize] = value as u8;
        table[symbol.to_ascii_uppercase() as usize] = value as u8;
        value += 1;
    }
    table[b'o' as usize] = 0;
    table[b'O' as usize] = 0;
    table[b'i' as usize] = 1;
    table[b'I' as usize] = 1;
    table[b'l' as usize] = 1;
    table[b'L' as usize] = 1;
    table
}

const fn is_separator(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'-')
}

/// x^5 + x^2 + 1: primitive, so alpha = x generates all 31 non-zero elements.
const GF_POLYNOMIAL: u8 = 0b10_0101;
const ALPHA: u8 = 2;

/// Multiplication in GF(2^5) by shift-and-reduce. Masks instead of branches keep the timing
/// independent of the (secret) symbols.
const fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0;
    let mut bit = 0;
    while bit < 5 {
        product ^= a & (b & 1).wrapping_neg();
        b >>= 1;
        a <<= 1;
        a ^= GF_POLYNOMIAL & ((a >> 5) & 1).wrapping_neg();
        bit += 1;
    }
    product
}

fn check_symbol(data: &[u8]) -> u8 {
    let mut weight = ALPHA;
    let mut sum = 0;
    for &value in data {
        sum ^= gf_mul(value, weight);
        weight = gf_mul(weight, ALPHA);
    }
    sum
}

/// A backup code in canonical form: 16 lower-case alphabet symbols, no separators. Zeroized on
/// drop; `Debug` prints `BackupCode(..)`.
#[derive(Clone)]
pub struct BackupCode(Zeroizing<String>);

impl BackupCode {
    /// A fresh random code. Each symbol is a random byte masked to 5 bits, which is uniform
    /// because 256 is a multiple of 32.
    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut symbols = Zeroizing::new([0u8; CODE_SYMBOLS]);
        entropy.fill(&mut symbols[..DATA_SYMBOLS]);
        for symbol in &mut symbols[..DATA_SYMBOLS] {
            *symbol &= 0b1_1111;
        }
        symbols[DATA_SYMBOLS] = check_symbol(&symbols[..DATA_SYMBOLS]);
        Self::from_symbols(&symbols)
    }

    /// Normalises what a person typed and checks it: spaces, tabs and hyphens are ignored, case
    /// does not matter, and `o`/`i`/`l` are read as `0`/`1`. Never panics.
    pub fn parse(input: &str) -> Result<Self, CodeInputError> {
        if !input.is_ascii() {
            return Err(CodeInputError::NonAscii);
        }
        if input.len() > MAX_INPUT_BYTES {
            let symbols = input.bytes().filter(|&byte| !is_separator(byte)).count();
            // Sixteen symbols drowned in separators is odd but not wrong; let it through.
            if symbols != CODE_SYMBOLS {
                return Err(CodeInputError::WrongLength { symbols });
            }
        }

        let mut symbols = Zeroizing::new([0u8; CODE_SYMBOLS]);
        let mut count = 0;
        for byte in input.bytes() {
            if is_separator(byte) {
                continue;
            }
            let value = DECODE[usize::from(byte)];
            if value == NOT_A_SYMBOL {
                return Err(CodeInputError::InvalidCharacter(char::from(byte)));
            }
            // Keep counting past 16 so the error can say how long the input really was.
            if let Some(slot) = symbols.get_mut(count) {
                *slot = value;
            }
            count += 1;
        }
        if count != CODE_SYMBOLS {
            return Err(CodeInputError::WrongLength { symbols: count });
        }

        let (data, check) = symbols.split_at(DATA_SYMBOLS);
        if check_symbol(data) != check[0] {
            return Err(CodeInputError::CheckFailed);
        }
        Ok(Self::from_symbols(&symbols))
    }

    /// The 16 symbols without separators: the form that gets hashed.
    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// The grouped form people read and write down, e.g. `k7p2-9xqm-b4ct-8hzr`.
    pub fn display(&self) -> Zeroizing<String> {
        // Exact capacity: a growing String would leave unzeroized copies behind when it moves.
        let mut grouped = Zeroizing::new(String::with_capacity(DISPLAY_LEN));
        for (index, symbol) in self.0.chars().enumerate() {
            if index > 0 && index % GROUP_SIZE == 0 {
                grouped.push('-');
            }
            grouped.push(symbol);
        }
        grouped
    }

    fn from_symbols(symbols: &[u8; CODE_SYMBOLS]) -> Self {
        let mut canonical = Zeroizing::new(String::with_capacity(CODE_SYMBOLS));
        for &value in symbols {
            canonical.push(char::from(ALPHABET[usize::from(value)]));
        }
        Self(canonical)
    }
}

/// Constant-time, so comparing a typed code with an issued one reveals nothing through timing.
impl PartialEq for BackupCode {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for BackupCode {}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode(..)")
    }
}

/// Repeated duplicates mean the entropy source is broken (a collision between two 75-bit codes
/// is about 2^-75); issuing codes from it would be worse than stopping.
const MAX_CONSECUTIVE_DUPLICATES: usize = 8;

/// `count` fresh codes, unique within the set so that using one never silently uses another.
///
/// # Panics
///
/// If the entropy source keeps producing codes already in the set.
pub fn generate_set(entropy: &mut dyn Entropy, count: usize) -> Vec<BackupCode> {
    let mut codes: Vec<BackupCode> = Vec::with_capacity(count);
    let mut consecutive_duplicates = 0;
    while codes.len() < count {
        let code = BackupCode::generate(entropy);
        if codes.contains(&code) {
            consecutive_duplicates += 1;
            assert!(
                consecutive_duplicates < MAX_CONSECUTIVE_DUPLICATES,
                "the entropy source keeps repeating itself; refusing to issue predictable backup codes"
            );
            continue;
        }
        consecutive_duplicates = 0;
        codes.push(code);
    }
    codes
}

/// Why typed input is not a backup code. Safe to show: no variant carries the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeInputError {
    NonAscii,
    WrongLength {
        symbols: usize,
    },
    /// One character is not secret on its own, and naming it is the most helpful hint.
    InvalidCharacter(char),
    CheckFailed,
}

impl fmt::Display for CodeInputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonAscii => f.write_str("backup codes use only the letters a-z and digits 0-9"),
            Self::WrongLength { symbols } => write!(
                f,
                "a backup code has {CODE_SYMBOLS} characters ({FORMAT_HINT}); this has {symbols}"
            ),
            // Debug formatting quotes the character and escapes control characters, so a stray
            // escape byte cannot reach the terminal.
            Self::InvalidCharacter(character) => {
                write!(f, "{character:?} is not used in backup codes")
            }
            Self::CheckFailed => f.write_str("not a valid backup code: check for typos"),
        }
    }
}

impl std::error::Error for CodeInputError {}

/// Whether a second-factor input is clearly a backup code rather than a TOTP code: after
/// normalisation it has at least 8 symbols and at least one letter, or more digits than any
/// one-time password has. Invalid characters are skipped rather than disqualifying, so a backup
/// code with a typo is still routed here and gets the precise parse error.
pub fn looks_like_backup_code(input: &str) -> bool {
    let mut symbols = 0;
    let mut has_letter = false;
    for byte in input.bytes() {
        let value = DECODE[usize::from(byte)];
        if value == NOT_A_SYMBOL {
            continue;
        }
        symbols += 1;
        has_letter |= value >= FIRST_LETTER_VALUE;
        if (symbols >= MIN_SYMBOLS_TO_LOOK_LIKE_A_CODE && has_letter) || symbols > MAX_OTP_DIGITS {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entropy::SeededEntropy;
    use proptest::prelude::*;

    fn code(seed: u64) -> BackupCode {
        BackupCode::generate(&mut SeededEntropy::new(seed))
    }

    fn values(code: &BackupCode) -> Vec<u8> {
        code.canonical()
            .bytes()
            .map(|byte| ALPHABET.iter().position(|&s| s == byte).unwrap() as u8)
            .collect()
    }

    fn encode(values: &[u8]) -> String {
        values
            .iter()
            .map(|&v| char::from(ALPHABET[usize::from(v)]))
            .collect()
    }

    fn is_display_shaped(text: &str) -> bool {
        text.len() == 19
            && text.bytes().enumerate().all(|(index, byte)| {
                if index % 5 == 4 {
                    byte == b'-'
                } else {
                    byte.is_ascii_digit() || byte.is_ascii_lowercase()
                }
            })
    }

    /// Feeds fixed bytes for the first `repeats` fills, then a seeded stream.
    struct RepeatingEntropy {
        fixed: [u8; DATA_SYMBOLS],
        repeats: usize,
        fills: usize,
        rest: SeededEntropy,
    }

    impl Entropy for RepeatingEntropy {
        fn fill(&mut self, buf: &mut [u8]) {
            self.fills += 1;
            if self.fills <= self.repeats {
                buf.copy_from_slice(&self.fixed[..buf.len()]);
            } else {
                self.rest.fill(buf);
            }
        }
    }

    #[test]
    fn generated_codes_parse_back_and_display_in_four_groups() {
        for seed in 0..200 {
            let code = code(seed);
            let display = code.display();
            assert!(is_display_shaped(&display), "{}", display.as_str());
            assert!(!display.contains(['i', 'l', 'o', 'u']));
            assert_eq!(display.replace('-', ""), code.canonical());
            assert_eq!(code.canonical().len(), CODE_SYMBOLS);
            assert_eq!(BackupCode::parse(code.canonical()), Ok(code.clone()));
            assert_eq!(BackupCode::parse(&display), Ok(code));
        }
    }

    #[test]
    fn format_hint_has_the_display_shape() {
        let display = code(7).display();
        assert_eq!(FORMAT_HINT.len(), display.len());
        for (hint, shown) in FORMAT_HINT.bytes().zip(display.bytes()) {
            assert_eq!(hint == b'-', shown == b'-');
        }
    }

    #[test]
    fn hand_computed_check_symbols_are_accepted() {
        // Pins the format, since codes already printed on paper must stay valid. By hand:
        // alpha^1 = 2 -> '2'; alpha^5 = alpha^2 + 1, so alpha^15 = (alpha^2 + 1)^3
        // = alpha^6 + alpha^4 + alpha^2 + 1 = alpha^4 + alpha^3 + alpha^2 + alpha + 1 = 31 -> 'z'.
        for valid in ["1000000000000002", "000000000000001z", "0000000000000000"] {
            assert_eq!(BackupCode::parse(valid).unwrap().canonical(), valid);
        }
        for invalid in ["1000000000000000", "0000000000000011", "000000000000001y"] {
            assert_eq!(BackupCode::parse(invalid), Err(CodeInputError::CheckFailed));
        }
    }

    #[test]
    fn alpha_generates_the_whole_field() {
        let mut seen = [false; 32];
        let mut power = 1;
        for _ in 0..31 {
            power = gf_mul(power, ALPHA);
            assert!(
                power != 0 && !seen[usize::from(power)],
                "alpha is not primitive"
            );
            seen[usize::from(power)] = true;
        }
        assert_eq!(power, 1, "alpha^31 must be 1");
        for a in 0..32 {
            assert_eq!(gf_mul(a, 1), a);
            assert_eq!(gf_mul(a, 0), 0);
            for b in 0..32 {
                assert_eq!(gf_mul(a, b), gf_mul(b, a));
                assert!(gf_mul(a, b) < 32);
            }
        }
    }

    #[test]
    fn upper_case_with_spaces_parses_to_the_same_code() {
        for seed in 0..50 {
            let code = code(seed);
            let typed = code.display().to_uppercase().replace('-', " ");
            assert_eq!(BackupCode::parse(&typed), Ok(code.clone()));
            let sloppy = format!("  {}\t", code.display().replace('-', " - "));
            assert_eq!(BackupCode::parse(&sloppy), Ok(code));
        }
    }

    #[test]
    fn look_alikes_map_to_zero_and_one() {
        let data = [0u8, 1, 0, 1, 1, 5, 9, 31, 20, 0, 1, 1, 0, 3, 17];
        let mut all = data.to_vec();
        all.push(check_symbol(&data));
        let canonical = encode(&all);
        let mut zeros = ['O', 'o'].iter().cycle();
        let mut ones = ['I', 'i', 'L', 'l'].iter().cycle();
        let typed: String = canonical
            .chars()
            .map(|symbol| match symbol {
                '0' => *zeros.next().unwrap(),
                '1' => *ones.next().unwrap(),
                other => other,
            })
            .collect();
        assert!(!typed.contains(['0', '1']), "{typed}");
        assert_eq!(BackupCode::parse(&typed).unwrap().canonical(), canonical);
    }

    #[test]
    fn every_single_substitution_is_detected() {
        for seed in 0..16 {
            let original = values(&code(seed));
            for position in 0..CODE_SYMBOLS {
                for replacement in 0..32 {
                    if replacement == original[position] {
                        continue;
                    }
                    let mut typo = original.clone();
                    typo[position] = replacement;
                    assert_eq!(
                        BackupCode::parse(&encode(&typo)),
                        Err(CodeInputError::CheckFailed)
                    );
                }
            }
        }
    }

    #[test]
    fn every_transposition_is_detected() {
        let mut adjacent_swaps = 0;
        for seed in 0..64 {
            let original = values(&code(seed));
            for first in 0..CODE_SYMBOLS {
                for second in first + 1..CODE_SYMBOLS {
                    if original[first] == original[second] {
                        continue;
                    }
                    adjacent_swaps += usize::from(second == first + 1);
                    let mut typo = original.clone();
                    typo.swap(first, second);
                    assert_eq!(
                        BackupCode::parse(&encode(&typo)),
                        Err(CodeInputError::CheckFailed),
                        "swap {first} <-> {second}"
                    );
                }
            }
        }
        assert!(adjacent_swaps > 64 * 10, "too few adjacent swaps exercised");
    }

    #[test]
    fn non_ascii_is_refused() {
        let error = BackupCode::parse("k7p2-9xqm-b4ct-8hzré").unwrap_err();
        assert_eq!(error, CodeInputError::NonAscii);
        assert_eq!(
            error.to_string(),
            "backup codes use only the letters a-z and digits 0-9"
        );
    }

    #[test]
    fn wrong_length_is_refused_with_the_count() {
        let error = BackupCode::parse("k7p2-9xqm-b4ct-8hz").unwrap_err();
        assert_eq!(error, CodeInputError::WrongLength { symbols: 15 });
        assert_eq!(
            error.to_string(),
            "a backup code has 16 characters (xxxx-xxxx-xxxx-xxxx); this has 15"
        );
        assert_eq!(
            BackupCode::parse("k7p2-9xqm-b4ct-8hzr-a"),
            Err(CodeInputError::WrongLength { symbols: 17 })
        );
        assert_eq!(
            BackupCode::parse(" - "),
            Err(CodeInputError::WrongLength { symbols: 0 })
        );
    }

    #[test]
    fn letters_outside_the_alphabet_are_named() {
        let error = BackupCode::parse("k7p2-9xqm-b4ct-8hzu").unwrap_err();
        assert_eq!(error, CodeInputError::InvalidCharacter('u'));
        assert_eq!(error.to_string(), "'u' is not used in backup codes");
        // The character is reported even when the length is also wrong.
        assert_eq!(
            BackupCode::parse("u"),
            Err(CodeInputError::InvalidCharacter('u'))
        );
        assert_eq!(
            BackupCode::parse("k7p2_9xqm"),
            Err(CodeInputError::InvalidCharacter('_'))
        );
        // Control characters are escaped, never written raw to a terminal.
        assert_eq!(
            CodeInputError::InvalidCharacter('\u{1b}').to_string(),
            "'\\u{1b}' is not used in backup codes"
        );
    }

    #[test]
    fn a_failed_check_says_exactly_this() {
        let error = BackupCode::parse("1000-0000-0000-0003").unwrap_err();
        assert_eq!(error, CodeInputError::CheckFailed);
        assert_eq!(
            error.to_string(),
            "not a valid backup code: check for typos"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(error);
        assert_eq!(
            boxed.to_string(),
            "not a valid backup code: check for typos"
        );
    }

    #[test]
    fn huge_inputs_are_refused_early() {
        let huge = "a".repeat(1 << 20);
        assert_eq!(
            BackupCode::parse(&huge),
            Err(CodeInputError::WrongLength { symbols: 1 << 20 })
        );
        // Over the limit the length is all that is looked at, so no character is named.
        assert_eq!(
            BackupCode::parse(&"u".repeat(MAX_INPUT_BYTES + 1)),
            Err(CodeInputError::WrongLength {
                symbols: MAX_INPUT_BYTES + 1
            })
        );
        assert_eq!(
            BackupCode::parse(&"é".repeat(1 << 20)),
            Err(CodeInputError::NonAscii)
        );
        let code = code(3);
        let padded = format!("{}{}", code.canonical(), " ".repeat(300));
        assert_eq!(BackupCode::parse(&padded), Ok(code));
    }

    #[test]
    fn a_set_has_distinct_valid_codes() {
        let codes = generate_set(&mut SeededEntropy::new(11), 20);
        assert_eq!(codes.len(), 20);
        for (index, code) in codes.iter().enumerate() {
            assert_eq!(BackupCode::parse(code.canonical()).as_ref(), Ok(code));
            assert!(!codes[index + 1..].contains(code));
        }
        assert!(generate_set(&mut SeededEntropy::new(11), 0).is_empty());
    }

    #[test]
    fn duplicates_in_a_set_are_replaced() {
        let mut entropy = RepeatingEntropy {
            fixed: [42; DATA_SYMBOLS],
            repeats: 2,
            fills: 0,
            rest: SeededEntropy::new(5),
        };
        let codes = generate_set(&mut entropy, 3);
        assert_eq!(codes.len(), 3);
        assert_eq!(&codes[0].canonical()[..DATA_SYMBOLS], "aaaaaaaaaaaaaaa");
        assert_ne!(codes[0], codes[1]);
        assert_ne!(codes[0], codes[2]);
        assert_ne!(codes[1], codes[2]);
        assert_eq!(entropy.fills, 4, "the duplicate must be drawn and replaced");
    }

    #[test]
    #[should_panic(expected = "entropy source keeps repeating itself")]
    fn a_stuck_entropy_source_is_refused() {
        let mut entropy = RepeatingEntropy {
            fixed: [0; DATA_SYMBOLS],
            repeats: usize::MAX,
            fills: 0,
            rest: SeededEntropy::new(0),
        };
        generate_set(&mut entropy, 2);
    }

    #[test]
    fn symbols_come_from_the_entropy() {
        assert_ne!(code(1), code(2));
        assert_eq!(code(1), code(1));
        // Each symbol is the low five bits of one byte; the high bits are discarded.
        let mut fixed = [0u8; DATA_SYMBOLS];
        for (index, byte) in fixed.iter_mut().enumerate() {
            *byte = index as u8 | 0b1110_0000;
        }
        let mut entropy = RepeatingEntropy {
            fixed,
            repeats: 1,
            fills: 0,
            rest: SeededEntropy::new(0),
        };
        let code = BackupCode::generate(&mut entropy);
        assert_eq!(&code.canonical()[..DATA_SYMBOLS], "0123456789abcde");
    }

    #[test]
    fn debug_does_not_leak_the_code() {
        let code = code(9);
        assert_eq!(format!("{code:?}"), "BackupCode(..)");
        let nested = format!("{:?}", BackupCode::parse(code.canonical()));
        assert!(!nested.contains(code.canonical()));
        assert!(!nested.contains(&code.canonical()[..4]));
    }

    #[test]
    fn routing_tells_backup_codes_from_totp() {
        assert!(looks_like_backup_code(&code(4).display()));
        assert!(looks_like_backup_code("k7p2-9xqm"));
        assert!(looks_like_backup_code("K7P2 9XQM B4CT 8HZR"));
        // A backup code with a typo still goes to the backup-code parser for a precise error.
        assert!(looks_like_backup_code("k7p2-9xqm-b4ct-8hzré"));
        assert!(looks_like_backup_code("k7p2-9xqm-b4ct-8hzu"));
        // No one-time password has 16 digits.
        assert!(looks_like_backup_code("1234-5678-9012-3456"));

        assert!(!looks_like_backup_code("123456"));
        assert!(!looks_like_backup_code("123 456"));
        assert!(!looks_like_backup_code("12345678"));
        assert!(!looks_like_backup_code("k7p2-9xq"));
        assert!(!looks_like_backup_code(""));
        // Look-alikes normalise to digits, so these are not letters.
        assert!(!looks_like_backup_code("oooo-llll"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            if let Ok(code) = BackupCode::parse(&input) {
                prop_assert_eq!(code.canonical().len(), CODE_SYMBOLS);
                prop_assert_eq!(BackupCode::parse(code.canonical()), Ok(code.clone()));
            }
            let _ = looks_like_backup_code(&input);
        }

        #[test]
        fn parse_never_panics_on_near_codes(input in "[0-9a-zA-Z \t_-]{0,300}") {
            match BackupCode::parse(&input) {
                Ok(code) => prop_assert_eq!(code.canonical().len(), CODE_SYMBOLS),
                Err(CodeInputError::NonAscii) => prop_assert!(false, "input is ASCII"),
                Err(_) => {}
            }
        }

        #[test]
        fn typing_variations_parse_back(
            seed in any::<u64>(),
            upper in prop::collection::vec(any::<bool>(), CODE_SYMBOLS),
            gaps in prop::collection::vec(0usize..5, CODE_SYMBOLS + 1),
        ) {
            const SEPARATORS: [&str; 5] = ["", " ", "-", "\t", " - "];
            let code = code(seed);
            let mut typed = String::new();
            for (index, symbol) in code.canonical().chars().enumerate() {
                typed.push_str(SEPARATORS[gaps[index]]);
                typed.push(if upper[index] { symbol.to_ascii_uppercase() } else { symbol });
            }
            typed.push_str(SEPARATORS[gaps[CODE_SYMBOLS]]);
            prop_assert_eq!(BackupCode::parse(&typed), Ok(code));
        }

        #[test]
        fn a_random_substitution_is_detected(
            seed in any::<u64>(),
            position in 0..CODE_SYMBOLS,
            change in 1u8..32,
        ) {
            let mut typo = values(&code(seed));
            typo[position] ^= change;
            prop_assert_eq!(
                BackupCode::parse(&encode(&typo)),
                Err(CodeInputError::CheckFailed)
            );
        }
    }
}
