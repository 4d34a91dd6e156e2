//! The records as the store writes them, apart from the domain types (Kanidm's "DB types"): each
//! schema's layout is frozen here, with the one conversion to and from the domain's
//! [`Account`], so a field added to a domain type changes no stored byte until it is added here.
//! - [`AccountV1`]: schema 1, exactly the postcard layout of sparekey up to 8bd8069; read only,
//!   to migrate such stores.
//! - schema 2 ([`encode_account`]): the same fields, the password optional (none for a
//!   second-factor-only account), the code set's binding flag and when its holder confirmed
//!   keeping it, the TOTP steps burned ahead, and an HMAC-SHA256 tag (under the record key derived from the master
//!   key) over the whole record, bound to the account name. The operator password and the operator's failure record carry
//!   such a tag too.
//!
//! A record whose tag does not verify is [`StoreError::Damaged`] with one line naming the
//! account: never used. Must never decide policy, and never touch a database: only bytes.

use serde::{Deserialize, Serialize};

use crate::core::account::{Account, ActiveTotp, LastLogin, PendingTotp, printable};
use crate::core::audit::LoginMethod;
use crate::core::code_set::{CodeSet, CodeSlot};
use crate::core::keys::{MacKey, SealedSecret, TAG_LEN};
use crate::core::password::HashParams;
use crate::core::store::StoreError;
use crate::core::throttle::FailureRecord;
use crate::core::totp::{Algorithm, TotpParams};

// ----- frozen shapes (schema 1, and unchanged in schema 2) ---------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SealedV1 {
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum AlgorithmV1 {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct TotpParamsV1 {
    algorithm: AlgorithmV1,
    digits: u32,
    period: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ActiveTotpV1 {
    issuer: String,
    secret: SealedV1,
    params: TotpParamsV1,
    last_step: Option<u64>,
    enrolled_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingTotpV1 {
    id: u64,
    issuer: String,
    secret: SealedV1,
    params: TotpParamsV1,
    started_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum LoginMethodV1 {
    Password,
    Totp,
    BackupCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct LastLoginV1 {
    at: i64,
    method: LoginMethodV1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct HashParamsV1 {
    m_kib: u32,
    t: u32,
    p: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CodeSlotV1 {
    digest: [u8; 16],
    used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CodeSetV1 {
    id: u64,
    salt: [u8; 16],
    params: HashParamsV1,
    created_at: i64,
    slots: Vec<CodeSlotV1>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
struct FailuresV1 {
    consecutive: u32,
    last_failure_at: Option<i64>,
}

/// An account record of schema 1, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountV1 {
    name: String,
    password: String,
    created_at: i64,
    totp: Option<ActiveTotpV1>,
    pending: Option<PendingTotpV1>,
    codes: Option<CodeSetV1>,
    failures: FailuresV1,
    last_login: Option<LastLoginV1>,
}

// ----- schema 2 -----------------------------------------------------------------------------

/// Schema 2's TOTP state: schema 1's, and the steps burned ahead of `last_step`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ActiveTotpV2 {
    issuer: String,
    secret: SealedV1,
    params: TotpParamsV1,
    last_step: Option<u64>,
    enrolled_at: i64,
    burned_ahead: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CodeSetV2 {
    id: u64,
    salt: [u8; 16],
    params: HashParamsV1,
    created_at: i64,
    slots: Vec<CodeSlotV1>,
    /// Digests bound to the account name and set id (false: carried over from schema 1).
    bound: bool,
    /// When the holder confirmed keeping the set; `None`: never confirmed.
    confirmed_at: Option<i64>,
}

/// An account record of schema 2 (before its tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AccountV2 {
    name: String,
    /// The PHC string; `None` for a second-factor-only account (its first factor is the
    /// system's), an option rather than an empty string so no check can mistake one for a hash.
    password: Option<String>,
    created_at: i64,
    totp: Option<ActiveTotpV2>,
    pending: Option<PendingTotpV1>,
    codes: Option<CodeSetV2>,
    failures: FailuresV1,
    last_login: Option<LastLoginV1>,
}

// ----- conversions: the one place a domain field meets its stored form ----------------------

fn sealed_to(s: &SealedSecret) -> SealedV1 {
    SealedV1 {
        nonce: s.nonce,
        ciphertext: s.ciphertext.clone(),
    }
}
fn sealed_from(s: SealedV1) -> SealedSecret {
    SealedSecret {
        nonce: s.nonce,
        ciphertext: s.ciphertext,
    }
}

fn params_to(p: TotpParams) -> TotpParamsV1 {
    let algorithm = match p.algorithm {
        Algorithm::Sha1 => AlgorithmV1::Sha1,
        Algorithm::Sha256 => AlgorithmV1::Sha256,
        Algorithm::Sha512 => AlgorithmV1::Sha512,
    };
    TotpParamsV1 {
        algorithm,
        digits: p.digits,
        period: p.period,
    }
}
fn params_from(p: TotpParamsV1) -> TotpParams {
    let algorithm = match p.algorithm {
        AlgorithmV1::Sha1 => Algorithm::Sha1,
        AlgorithmV1::Sha256 => Algorithm::Sha256,
        AlgorithmV1::Sha512 => Algorithm::Sha512,
    };
    TotpParams {
        algorithm,
        digits: p.digits,
        period: p.period,
    }
}

fn totp_to(t: &ActiveTotp) -> ActiveTotpV2 {
    ActiveTotpV2 {
        issuer: t.issuer.clone(),
        secret: sealed_to(&t.secret),
        params: params_to(t.params),
        last_step: t.last_step,
        enrolled_at: t.enrolled_at,
        burned_ahead: t.burned_ahead.clone(),
    }
}
fn totp_from(t: ActiveTotpV2) -> ActiveTotp {
    ActiveTotp {
        issuer: t.issuer,
        secret: sealed_from(t.secret),
        params: params_from(t.params),
        last_step: t.last_step,
        enrolled_at: t.enrolled_at,
        burned_ahead: t.burned_ahead,
    }
}
/// A schema-1 TOTP state: schema 1 burned no steps ahead.
fn totp_from_v1(t: ActiveTotpV1) -> ActiveTotp {
    totp_from(ActiveTotpV2 {
        issuer: t.issuer,
        secret: t.secret,
        params: t.params,
        last_step: t.last_step,
        enrolled_at: t.enrolled_at,
        burned_ahead: Vec::new(),
    })
}

fn pending_to(p: &PendingTotp) -> PendingTotpV1 {
    PendingTotpV1 {
        id: p.id,
        issuer: p.issuer.clone(),
        secret: sealed_to(&p.secret),
        params: params_to(p.params),
        started_at: p.started_at,
    }
}
fn pending_from(p: PendingTotpV1) -> PendingTotp {
    PendingTotp {
        id: p.id,
        issuer: p.issuer,
        secret: sealed_from(p.secret),
        params: params_from(p.params),
        started_at: p.started_at,
    }
}

fn login_to(l: LastLogin) -> LastLoginV1 {
    let method = match l.method {
        LoginMethod::Password => LoginMethodV1::Password,
        LoginMethod::Totp => LoginMethodV1::Totp,
        LoginMethod::BackupCode => LoginMethodV1::BackupCode,
    };
    LastLoginV1 { at: l.at, method }
}
fn login_from(l: LastLoginV1) -> LastLogin {
    let method = match l.method {
        LoginMethodV1::Password => LoginMethod::Password,
        LoginMethodV1::Totp => LoginMethod::Totp,
        LoginMethodV1::BackupCode => LoginMethod::BackupCode,
    };
    LastLogin { at: l.at, method }
}

fn hash_to(p: HashParams) -> HashParamsV1 {
    HashParamsV1 {
        m_kib: p.m_kib,
        t: p.t,
        p: p.p,
    }
}
fn hash_from(p: HashParamsV1) -> HashParams {
    HashParams {
        m_kib: p.m_kib,
        t: p.t,
        p: p.p,
    }
}

fn slots_to(slots: &[CodeSlot]) -> Vec<CodeSlotV1> {
    (slots.iter())
        .map(|s| CodeSlotV1 {
            digest: s.digest,
            used_at: s.used_at,
        })
        .collect()
}
fn slots_from(slots: Vec<CodeSlotV1>) -> Vec<CodeSlot> {
    (slots.into_iter())
        .map(|s| CodeSlot {
            digest: s.digest,
            used_at: s.used_at,
        })
        .collect()
}

fn codes_to(c: &CodeSet) -> CodeSetV2 {
    CodeSetV2 {
        id: c.id,
        salt: c.salt,
        params: hash_to(c.params),
        created_at: c.created_at,
        slots: slots_to(&c.slots),
        bound: c.bound,
        confirmed_at: c.confirmed_at,
    }
}
fn codes_from(c: CodeSetV2) -> CodeSet {
    CodeSet {
        id: c.id,
        salt: c.salt,
        params: hash_from(c.params),
        created_at: c.created_at,
        slots: slots_from(c.slots),
        bound: c.bound,
        confirmed_at: c.confirmed_at,
    }
}
/// A schema-1 set: its digests were computed with no associated data. Schema 1 did not record
/// confirmation; its sets count as confirmed when issued, since their holders have lived with
/// them since (flagging every migrated set would bury the sets that really were lost under a
/// warning on every account, and a set that was never kept shows as unused codes anyway).
fn codes_from_v1(c: CodeSetV1) -> CodeSet {
    codes_from(CodeSetV2 {
        id: c.id,
        salt: c.salt,
        params: c.params,
        created_at: c.created_at,
        slots: c.slots,
        bound: false,
        confirmed_at: Some(c.created_at),
    })
}

fn failures_to(f: FailureRecord) -> FailuresV1 {
    FailuresV1 {
        consecutive: f.consecutive,
        last_failure_at: f.last_failure_at,
    }
}
fn failures_from(f: FailuresV1) -> FailureRecord {
    FailureRecord {
        consecutive: f.consecutive,
        last_failure_at: f.last_failure_at,
    }
}

impl From<&Account> for AccountV2 {
    fn from(a: &Account) -> Self {
        Self {
            name: a.name.clone(),
            password: a.password.clone(),
            created_at: a.created_at,
            totp: a.totp.as_ref().map(totp_to),
            pending: a.pending.as_ref().map(pending_to),
            codes: a.codes.as_ref().map(codes_to),
            failures: failures_to(a.failures),
            last_login: a.last_login.map(login_to),
        }
    }
}

impl From<AccountV2> for Account {
    fn from(a: AccountV2) -> Self {
        Self {
            name: a.name,
            password: a.password,
            created_at: a.created_at,
            totp: a.totp.map(totp_from),
            pending: a.pending.map(pending_from),
            codes: a.codes.map(codes_from),
            failures: failures_from(a.failures),
            last_login: a.last_login.map(login_from),
        }
    }
}

impl From<AccountV1> for Account {
    fn from(a: AccountV1) -> Self {
        Self {
            name: a.name,
            // Schema 1 had no second-factor-only accounts: every record has its hash.
            password: Some(a.password),
            created_at: a.created_at,
            totp: a.totp.map(totp_from_v1),
            pending: a.pending.map(pending_from),
            codes: a.codes.map(codes_from_v1),
            failures: failures_from(a.failures),
            last_login: a.last_login.map(login_from),
        }
    }
}

/// Writes `account` as schema 1 did: for tests that build schema-1 stores.
#[cfg(any(test, feature = "test-support"))]
pub fn encode_account_v1(account: &Account) -> Vec<u8> {
    let v2 = AccountV2::from(account);
    let v1 = AccountV1 {
        name: v2.name,
        password: v2
            .password
            .expect("schema 1 has no second-factor-only accounts"),
        created_at: v2.created_at,
        totp: v2.totp.map(|t| ActiveTotpV1 {
            issuer: t.issuer,
            secret: t.secret,
            params: t.params,
            last_step: t.last_step,
            enrolled_at: t.enrolled_at,
        }),
        pending: v2.pending,
        codes: v2.codes.map(|c| CodeSetV1 {
            id: c.id,
            salt: c.salt,
            params: c.params,
            created_at: c.created_at,
            slots: c.slots,
        }),
        failures: v2.failures,
        last_login: v2.last_login,
    };
    crate::store::encode(&v1)
}

/// The untagged schema-2 form of `account`: what a backup holds (the backup file carries one
/// tag over everything).
pub fn encode_account_body(account: &Account) -> Vec<u8> {
    crate::store::encode(&AccountV2::from(account))
}

/// Reads [`encode_account_body`]'s bytes.
pub fn decode_account_body(bytes: &[u8]) -> Option<Account> {
    whole::<AccountV2>(bytes).map(Account::from)
}

// ----- tagged bytes -------------------------------------------------------------------------

/// What each tag is computed for, so no tagged value can stand in for another kind.
const ACCOUNT: &str = "sparekey account record v2";
const OPERATOR_PASSWORD: &str = "sparekey operator password v2";
const OPERATOR_FAILURES: &str = "sparekey operator failures v2";

fn seal(key: &MacKey, kind: &str, subject: &str, mut body: Vec<u8>) -> Vec<u8> {
    let tag = key.tag(kind, subject, &body);
    body.extend_from_slice(&tag);
    body
}

/// The body of tagged `bytes`, if the tag verifies.
fn open<'a>(key: &MacKey, kind: &str, subject: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let split = bytes.len().checked_sub(TAG_LEN)?;
    let (body, tag) = bytes.split_at(split);
    key.verify(kind, subject, body, tag).then_some(body)
}

/// Postcard bytes that are one whole value, nothing after it.
fn whole<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

fn damaged_account(name: &str, why: &str) -> StoreError {
    StoreError::Damaged(format!(
        "the record of account '{}' {why}: restore it from a backup ('sparekey restore FILE')",
        printable(name)
    ))
}

/// The stored bytes of `account` under schema 2.
pub fn encode_account(key: &MacKey, account: &Account) -> Vec<u8> {
    let body = crate::store::encode(&AccountV2::from(account));
    seal(key, ACCOUNT, &account.name, body)
}

/// Reads the schema-2 record stored under `name`; damage or a tag that does not verify (an
/// edit, a record moved from another name, another key) is [`StoreError::Damaged`].
pub fn decode_account(key: &MacKey, name: &str, bytes: &[u8]) -> Result<Account, StoreError> {
    let body = open(key, ACCOUNT, name, bytes).ok_or_else(|| {
        damaged_account(
            name,
            "fails its integrity check (altered, or written with another key)",
        )
    })?;
    let record: AccountV2 =
        whole(body).ok_or_else(|| damaged_account(name, "cannot be decoded"))?;
    if record.name != name {
        return Err(damaged_account(name, "holds another account's name"));
    }
    Ok(record.into())
}

/// Reads a schema-1 record stored under `name` (no tag: schema 1 had none).
pub fn decode_account_v1(name: &str, bytes: &[u8]) -> Result<Account, StoreError> {
    let record: AccountV1 = postcard::from_bytes(bytes)
        .map_err(|e| damaged_account(name, &format!("cannot be decoded ({e})")))?;
    if record.name != name {
        return Err(damaged_account(name, "holds another account's name"));
    }
    Ok(record.into())
}

/// The operator password's record: the PHC string, or that none is set. "None" is a tagged
/// record too, so deleting the record cannot pass for a kiosk whose password was never set.
pub fn encode_operator_password(key: &MacKey, phc: Option<&str>) -> Vec<u8> {
    let body = crate::store::encode(&phc);
    seal(key, OPERATOR_PASSWORD, "", body)
}

pub fn decode_operator_password(key: &MacKey, bytes: &[u8]) -> Result<Option<String>, StoreError> {
    open(key, OPERATOR_PASSWORD, "", bytes)
        .and_then(whole::<Option<String>>)
        .ok_or_else(|| {
            StoreError::Damaged(
                "the operator password fails its integrity check (altered, or written with another key): restore from a backup".into(),
            )
        })
}

pub fn encode_operator_failures(key: &MacKey, record: &FailureRecord) -> Vec<u8> {
    let body = crate::store::encode(&failures_to(*record));
    seal(key, OPERATOR_FAILURES, "", body)
}

pub fn decode_operator_failures(key: &MacKey, bytes: &[u8]) -> Result<FailureRecord, StoreError> {
    open(key, OPERATOR_FAILURES, "", bytes)
        .and_then(whole::<FailuresV1>)
        .map(failures_from)
        .ok_or_else(|| {
            StoreError::Damaged(
                "the operator's failure record fails its integrity check (altered, or written with another key): restore from a backup".into(),
            )
        })
}

/// What a schema marker says (see [`encode_schema_marker`]).
const SCHEMA_MARKER: &str = "sparekey schema marker v2";
const MIGRATION_MARKER: &str = "sparekey migration in progress v2";

/// The tagged schema marker: the schema version, authenticated under the record key. Written
/// when a store is first bound at schema 2 and by a migration's switch-over, so the untagged
/// `schema_version` alone can never take a store back to schema 1 (whose records are
/// untagged, and would be migrated, that is tagged, as they stand).
pub fn encode_schema_marker(key: &MacKey, version: u32) -> Vec<u8> {
    seal(key, SCHEMA_MARKER, "", version.to_be_bytes().to_vec())
}

/// The version a schema marker vouches for; damage if it does not verify.
pub fn decode_schema_marker(key: &MacKey, bytes: &[u8]) -> Result<u32, StoreError> {
    open(key, SCHEMA_MARKER, "", bytes)
        .and_then(|body| <[u8; 4]>::try_from(body).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| {
            StoreError::Damaged(
                "the schema marker fails its integrity check (altered, or written with another key): restore from a backup".into(),
            )
        })
}

/// The tagged note a migration writes before it fills the schema-2 trees, so that what an
/// interrupted migration left there is told from the trees of a store that was at schema 2.
pub fn encode_migration_marker(key: &MacKey, version: u32) -> Vec<u8> {
    seal(key, MIGRATION_MARKER, "", version.to_be_bytes().to_vec())
}

/// Whether `bytes` is a migration note to `version` written with `key`.
pub fn is_migration_marker(key: &MacKey, bytes: &[u8], version: u32) -> bool {
    open(key, MIGRATION_MARKER, "", bytes).is_some_and(|body| body == version.to_be_bytes())
}

/// Reads schema 1's operator failure record (plain postcard).
pub fn decode_operator_failures_v1(bytes: &[u8]) -> Result<FailureRecord, StoreError> {
    postcard::from_bytes::<FailuresV1>(bytes)
        .map(failures_from)
        .map_err(|e| StoreError::Damaged(format!("the operator's failure record ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::entropy::SeededEntropy;
    use crate::core::keys::MasterKey;

    fn sample() -> Account {
        let mut e = SeededEntropy::new(4);
        let key = MasterKey::generate(&mut e);
        Account {
            name: "alice".into(),
            password: Some("$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA".into()),
            created_at: 10,
            totp: Some(ActiveTotp {
                issuer: "sparekey".into(),
                secret: key.seal(&mut e, b"0123456789abcdefghij", "alice"),
                params: TotpParams::default(),
                last_step: Some(99),
                enrolled_at: 11,
                burned_ahead: vec![101, 103],
            }),
            pending: None,
            codes: Some(CodeSet {
                id: 7,
                salt: [1; 16],
                params: HashParams::TEST_ONLY,
                created_at: 12,
                slots: vec![
                    CodeSlot {
                        digest: [2; 16],
                        used_at: Some(13),
                    },
                    CodeSlot {
                        digest: [3; 16],
                        used_at: None,
                    },
                ],
                bound: true,
                confirmed_at: Some(12),
            }),
            failures: FailureRecord {
                consecutive: 2,
                last_failure_at: Some(14),
            },
            last_login: Some(LastLogin {
                at: 15,
                method: LoginMethod::BackupCode,
            }),
        }
    }

    /// The frozen schema-1 layout is byte for byte the domain type's layout of 8bd8069 (the
    /// domain type had no `bound` nor `burned_ahead` then: a set read back is unbound, and no
    /// step is burned ahead).
    #[test]
    fn schema_one_round_trips_through_the_frozen_layout() {
        let mut account = sample();
        let bytes = encode_account_v1(&account);
        account.codes.as_mut().unwrap().bound = false;
        account.totp.as_mut().unwrap().burned_ahead.clear();
        // Schema 1 kept no confirmation: its sets count as confirmed when issued.
        let codes = account.codes.as_mut().unwrap();
        codes.confirmed_at = Some(codes.created_at);
        assert_eq!(decode_account_v1("alice", &bytes).unwrap(), account);
        assert!(decode_account_v1("bob", &bytes).is_err());
    }

    /// A second-factor-only account keeps "no password" through schema 2 and a backup's body,
    /// and reads back as no password, never as a hash to check against.
    #[test]
    fn a_second_factor_only_record_reads_back_with_no_password() {
        let key = MasterKey::from_bytes([5; 32]).store_key();
        let mut account = sample();
        account.password = None;
        let bytes = encode_account(key.records(), &account);
        let back = decode_account(key.records(), "alice", &bytes).unwrap();
        assert_eq!(back.password, None);
        assert_eq!(back, account);
        let body = decode_account_body(&encode_account_body(&account)).unwrap();
        assert_eq!(body.password, None);
        // Not the same bytes as a record with a password: the option is in the layout.
        assert_ne!(
            encode_account_body(&account),
            encode_account_body(&sample())
        );
    }

    #[test]
    fn a_schema_two_record_reads_back_only_unaltered_under_its_name_and_key() {
        let key = MasterKey::from_bytes([5; 32]).store_key();
        let account = sample();
        let bytes = encode_account(key.records(), &account);
        assert_eq!(
            decode_account(key.records(), "alice", &bytes).unwrap(),
            account
        );
        let err = decode_account(key.records(), "bob", &bytes).unwrap_err();
        assert!(err.to_string().contains("account 'bob'"), "{err}");
        for i in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut altered = bytes.clone();
            altered[i] ^= 1;
            let err = decode_account(key.records(), "alice", &altered).unwrap_err();
            assert!(
                matches!(&err, StoreError::Damaged(l) if l.contains("'alice' fails its integrity check")),
                "{err}"
            );
        }
        let other = MasterKey::from_bytes([6; 32]).store_key();
        assert!(decode_account(other.records(), "alice", &bytes).is_err());
        assert!(decode_account(key.records(), "alice", &bytes[..10]).is_err());
    }

    #[test]
    fn operator_values_are_tagged() {
        let key = MasterKey::from_bytes([5; 32]).store_key();
        let k = key.records();
        let phc = encode_operator_password(k, Some("$argon2id$x"));
        assert_eq!(
            decode_operator_password(k, &phc).unwrap().as_deref(),
            Some("$argon2id$x")
        );
        let none = encode_operator_password(k, None);
        assert_eq!(decode_operator_password(k, &none).unwrap(), None);
        let mut altered = phc.clone();
        altered[2] ^= 1;
        assert!(decode_operator_password(k, &altered).is_err());
        let record = FailureRecord {
            consecutive: 3,
            last_failure_at: Some(4),
        };
        let bytes = encode_operator_failures(k, &record);
        assert_eq!(decode_operator_failures(k, &bytes).unwrap(), record);
        assert!(decode_operator_failures(k, &phc).is_err());
        assert!(decode_operator_failures(k, &bytes[..bytes.len() - 1]).is_err());
    }
}
