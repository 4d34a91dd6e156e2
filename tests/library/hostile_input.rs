//! Hostile input: the fuzz entry points on a short seeded run (the same functions the cargo-fuzz
//! targets in `fuzz/` call), damaged store records, and a damaged store on disk. Every case must
//! end in a clear error, never a panic.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use proptest::prelude::*;
use sparekey::core::account::Account;
use sparekey::core::clock::ManualClock;
use sparekey::core::entropy::{Entropy, SeededEntropy};
use sparekey::core::store::{Store, StoreError};
use sparekey::fuzzing;
use sparekey::store::sled_store::SledStore;
use sparekey::store::{decode, encode};

/// Inputs that are interesting to every parser: near-valid codes, separators, non-ASCII,
/// control characters, huge lengths.
fn seeded_inputs() -> Vec<Vec<u8>> {
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"k7p2-9xqm-b4ct-8hzr".to_vec(),
        b"K7P2 9XQM B4CT 8HZR".to_vec(),
        "k7p2-9xqm-b4ct-8hzré".as_bytes().to_vec(),
        b"123456".to_vec(),
        b"12 34 56".to_vec(),
        "１２３４５６".as_bytes().to_vec(),
        vec![0xff, 0xfe, 0x00, 0x1b, b'['],
        vec![b'-'; 10_000],
        vec![b'a'; 100_000],
        b"otpauth://totp/a:b?secret=AAAA".to_vec(),
    ];
    let mut entropy = SeededEntropy::new(0x5eed);
    for len in 0..2_000usize {
        let mut buf = vec![0u8; len % 64];
        entropy.fill(&mut buf);
        inputs.push(buf);
    }
    inputs
}

#[test]
fn fuzz_entry_points_survive_a_seeded_run() {
    for input in seeded_inputs() {
        fuzzing::code_input(&input);
        fuzzing::totp_input(&input);
        fuzzing::store_record(&input);
        fuzzing::backup_file(&input);
    }
}

/// A real enrolled account record, as the sled store writes it.
fn sample_account() -> Account {
    let dir = tempfile::tempdir().unwrap();
    let paths =
        sparekey::app::Paths::resolve(Some(dir.path().join("d")), Some(dir.path().join("k")))
            .unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let service = open_disk(&paths, &clock, 1).unwrap();
    enrolled(&service, &clock, "zed");
    drop(service);
    let store = open_store_keyed(&paths.store, &paths.key_file).unwrap();
    store.load_account("zed").unwrap().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_records_decode_or_fail_cleanly(flips in proptest::collection::vec((0usize..4096, 0u8..8), 0..6), cut in 0usize..4096) {
        let account = sample_account_cached();
        let mut bytes = encode(&account);
        for (at, bit) in flips {
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
        }
        bytes.truncate(cut.min(bytes.len()));
        match decode::<Account>(&bytes, "the record") {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(matches!(e, StoreError::Damaged(_)));
                prop_assert!(e.to_string().starts_with("the store is damaged: the record cannot be decoded"));
            }
        }
    }

    #[test]
    fn records_round_trip(seed in any::<u64>()) {
        let mut account = sample_account_cached();
        account.created_at = seed as i64;
        account.failures.consecutive = (seed % 50) as u32;
        prop_assert_eq!(decode::<Account>(&encode(&account), "r").unwrap(), account);
    }
}

fn sample_account_cached() -> Account {
    static CELL: std::sync::OnceLock<Account> = std::sync::OnceLock::new();
    CELL.get_or_init(sample_account).clone()
}

static TEST_KEY: std::sync::LazyLock<sparekey::core::keys::MasterKey> =
    std::sync::LazyLock::new(|| sparekey::core::keys::MasterKey::from_bytes([3; 32]));

#[test]
fn a_damaged_store_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    {
        let store = SledStore::open(&store_dir, Duration::ZERO).unwrap();
        store.bind_key(&TEST_KEY.store_key()).unwrap();
        store
            .insert_account(&sample_account_cached(), &|_| Vec::new())
            .unwrap();
    }
    // Overwrite the middle of sled's data file with garbage.
    let db = store_dir.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 4..len * 3 / 4] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let opened = open_store(&store_dir).and_then(|s| s.bind_key(&TEST_KEY.store_key()).map(|_| s));
    match opened {
        Err(e) => assert!(
            matches!(e, StoreError::Damaged(_) | StoreError::Io(_)),
            "{e:?}"
        ),
        // sled may recover to the last consistent state; then the record must read back or
        // fail as damaged, never panic.
        Ok(store) => match store.load_account("zed") {
            Ok(_) => {}
            Err(e) => assert!(matches!(e, StoreError::Damaged(_)), "{e:?}"),
        },
    }
}

/// Percent-decodes as an authenticator app would (RFC 3986).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Label text an operator might type: printable text with spaces; the same laced with ':', or
/// with control characters (C0 and DEL); or only spaces, empty included.
fn operator_label() -> impl Strategy<Value = String> {
    fn text(extra: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        let one = prop_oneof![6 => "\\PC", 2 => Just(" ".to_string()), 2 => extra];
        proptest::collection::vec(one, 0..=24).prop_map(|parts| parts.concat())
    }
    prop_oneof![
        4 => text(Just(" ".to_string())),
        1 => text(Just(":".to_string())),
        1 => text("[\\x00-\\x1f\\x7f]"),
        1 => " {0,4}",
    ]
}

/// Must the URI refuse this label? Empty or only whitespace, a ':', or a control character.
fn must_refuse(label: &str) -> bool {
    label.trim().is_empty() || label.contains(':') || label.chars().any(char::is_control)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any issuer and account an operator can type either round-trips through the otpauth URI
    /// exactly, or is refused with a clear reason (a ':' or a control character, or empty).
    #[test]
    fn otpauth_uri_round_trips_or_refuses(issuer in operator_label(), account in operator_label(), seed in any::<u64>()) {
        use sparekey::core::totp::{TotpParams, TotpSecret, otpauth_uri};
        let secret = TotpSecret::generate(&mut SeededEntropy::new(seed));
        match otpauth_uri(&issuer, &account, &secret, TotpParams::default()) {
            Ok(uri) => {
                prop_assert!(
                    !must_refuse(&issuer) && !must_refuse(&account),
                    "accepted issuer {issuer:?} and account {account:?}"
                );
                let rest = uri.strip_prefix("otpauth://totp/").unwrap();
                let (label, query) = rest.split_once('?').unwrap();
                // Only unreserved characters and escapes: nothing that could split the URI.
                prop_assert!(label.bytes().chain(query.bytes()).all(|b| b.is_ascii_graphic()));
                let (i, a) = label.split_once(':').unwrap();
                prop_assert_eq!(percent_decode(i), issuer.as_bytes());
                prop_assert_eq!(percent_decode(a), account.as_bytes());
                let secret_b32 = secret.to_base32();
                // The default parameters (SHA1, 6 digits, 30 s) are left out.
                let expected_query = format!("secret={}&issuer={i}", secret_b32.as_str());
                prop_assert_eq!(query, expected_query.as_str());
            }
            Err(e) => {
                prop_assert!(must_refuse(&issuer) || must_refuse(&account), "{e}");
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn impossible_stored_hash_parameters_are_a_clear_error_not_a_crash() {
    use sparekey::core::backup_code::BackupCode;
    use sparekey::core::error::ErrorKind;
    use sparekey::core::keys::MasterKey;
    use sparekey::core::service::Service;
    use sparekey::core::store::StoreImage;
    use sparekey::store::memory::MemoryStore;

    let mut account = sample_account_cached();
    // A damaged record asking for 4 TiB of memory per hash.
    account.codes.as_mut().unwrap().params.m_kib = u32::MAX;
    let store = MemoryStore::new();
    let image = StoreImage {
        key_fingerprint: None,
        operator_password: None,
        accounts: vec![account],
        audit: vec![],
    };
    store.import_image(&image).unwrap();
    // The key the sample account was made with (the first bytes of its seeded entropy).
    let key = MasterKey::generate(&mut SeededEntropy::new(1));
    let service = Service::new(
        Box::new(store),
        Arc::new(ManualClock::new(T0 + 600)),
        Box::new(SeededEntropy::new(2)),
        key,
        test_config(),
    )
    .unwrap();
    let stranger = BackupCode::generate(&mut SeededEntropy::new(3)).display();
    let err = service.login("zed", PASSWORD, Some(&stranger)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(
        err.to_string().contains("impossible Argon2id parameters"),
        "{err}"
    );
}
