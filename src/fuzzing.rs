//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the short seeded run in
//! `cargo test` (tests/library/hostile_input.rs), so both exercise exactly the same code. Each takes
//! arbitrary bytes and must return without panicking, whatever they are.

use crate::core::account::Account;
use crate::core::audit::AuditEvent;
use crate::core::backup_code::BackupCode;
use crate::core::service::parse_second_factor;
use crate::core::totp::{self, TotpParams, TotpSecret};
use crate::store::decode;

/// Backup-code parsing and second-factor classification on any text.
pub fn code_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(code) = BackupCode::parse(&text) {
        // Whatever parses must parse again from its own display form to the same code.
        let again = BackupCode::parse(&code.display()).expect("display form parses");
        assert!(again == code);
    }
    let _ = parse_second_factor(&text, TotpParams::default());
}

/// TOTP verification, base32 secrets and otpauth labels on any text.
pub fn totp_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let secret = TotpSecret::from_bytes(data.iter().take(64).copied().collect());
    let now = data.iter().fold(0i64, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(i64::from(*b))
    });
    let _ = totp::verify(&secret, &text, now, TotpParams::default(), Some(now as u64));
    let _ = TotpSecret::from_base32(&text);
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(i, _)| i);
    let (issuer, account) = text.split_at(middle);
    let _ = totp::otpauth_uri(issuer, account, &secret, TotpParams::default());
}

/// Decoding store records from any bytes.
pub fn store_record(data: &[u8]) {
    let _ = decode::<Account>(data, "fuzzed account");
    let key = crate::core::keys::MasterKey::from_bytes([7; 32]).store_key();
    let _ = crate::store::records::decode_account(key.records(), "fuzzed", data);
    let _ = crate::store::records::decode_account_v1("fuzzed", data);
    let _ = decode::<AuditEvent>(data, "fuzzed event");
}

/// Reading a backup file from any bytes: as they are, and after each format's magic, so the
/// frame parser and the format-2 decoder are reached. The key is fixed: no input verifies,
/// and every one must end in an error.
pub fn backup_file(data: &[u8]) {
    use crate::app::backup_file::{BACKUP_MAGIC, decode};
    let key = crate::core::keys::MasterKey::from_bytes([7; 32]);
    for magic in [&b""[..], BACKUP_MAGIC, b"SPAREKEY-BACKUP\x00\x02"] {
        let bytes = [magic, data].concat();
        assert!(decode(bytes.as_slice(), &key).is_err());
    }
}
