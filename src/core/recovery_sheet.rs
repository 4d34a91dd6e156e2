//! What a new set of backup codes looks like outside sparekey: the numbered list (screen,
//! clipboard) and the export file, the same for both faces. Must never write anything itself:
//! the faces decide where the text goes; every buffer is zeroized on drop.

use zeroize::Zeroizing;

use crate::core::backup_code::BackupCode;
use crate::core::clock::UnixTime;
use crate::core::service::IssuedCodes;
use crate::core::time_text::{utc_iso, utc_minute};

/// `1. k7p2-9xqm-b4ct-8hzr`, one per line, numbers right-aligned, so a paste keeps the order.
pub(crate) fn numbered_list(codes: &[BackupCode], boxes: bool) -> Zeroizing<String> {
    let width = codes.len().to_string().len();
    let mut text = Zeroizing::new(String::with_capacity(codes.len() * 32));
    for (i, code) in codes.iter().enumerate() {
        text.push_str(&format!(
            "{:>width$}. {}",
            i + 1,
            if boxes { "[ ] " } else { "" }
        ));
        text.push_str(&code.display());
        text.push('\n');
    }
    text
}

/// The title and the issuer, account and date lines that open both the export file and the
/// copied text, so a pasted list still says whose codes they are.
fn header(issued: &IssuedCodes) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "sparekey recovery codes\n\nIssuer:  {}\nAccount: {}\nDate:    {}\n\n",
        issued.issuer,
        issued.account,
        utc_minute(issued.issued_at)
    ))
}

/// What a copy puts in the clipboard: the header of the export file and the numbered codes.
pub(crate) fn clipboard_text(issued: &IssuedCodes) -> Zeroizing<String> {
    let mut text = header(issued);
    text.push_str(&numbered_list(&issued.codes, false));
    text
}

/// The export file: who, when, the numbered codes with a box to tick, and how to use and keep
/// them.
pub(crate) fn sheet(issued: &IssuedCodes) -> Zeroizing<String> {
    let mut text = header(issued);
    text.push_str(&numbered_list(&issued.codes, true));
    text.push_str(
        "\nEach code signs in once, with your password, when your authenticator is not at hand; tick its box when used.\n\
         Keep this list offline and private (print it or put it in a password manager, away from your phone).\n\
         When few codes are left, generate a new set: every code above then stops working.\n",
    );
    text
}

/// The file name proposed for an export: the account, with anything a file system might choke
/// on replaced, and the UTC date and time the codes were issued (`2024-05-01-1234Z`), so a
/// later set never proposes the name of an earlier one.
pub(crate) fn file_name(account: &str, issued_at: UnixTime) -> String {
    let safe: String = account
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let iso = utc_iso(issued_at);
    // 2024-05-01T12:34:50Z → 2024-05-01-1234Z: no ':' (refused by some file systems).
    let when = format!("{}-{}{}Z", &iso[..10], &iso[11..13], &iso[14..16]);
    format!(
        "sparekey-recovery-codes-{}-{when}.txt",
        safe.trim_start_matches('.')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backup_code::generate_set;
    use crate::core::entropy::SeededEntropy;

    #[test]
    fn sheet_has_everything_a_person_needs() {
        let codes = generate_set(&mut SeededEntropy::new(4), 10);
        let displayed: Vec<String> = codes.iter().map(|c| c.display().to_string()).collect();
        let issued = IssuedCodes {
            account: "alice".into(),
            set_id: 1,
            issuer: "Acme".into(),
            issued_at: 1_714_566_896,
            codes,
        };
        let text = sheet(&issued);
        assert!(text.contains("Issuer:  Acme\nAccount: alice\nDate:    2024-05-01 12:34 UTC"));
        assert!(text.contains(&format!(" 1. [ ] {}\n", displayed[0])));
        assert!(text.contains(&format!("10. [ ] {}\n", displayed[9])));
        assert_eq!(text.lines().filter(|l| l.contains("[ ]")).count(), 10);
        assert_eq!(text.trim_end().lines().rev().take(3).count(), 3);
        assert!(!numbered_list(&issued.codes, false).contains("[ ]"));
        let copied = clipboard_text(&issued);
        assert!(copied.contains("Issuer:  Acme\nAccount: alice\nDate:    2024-05-01 12:34 UTC"));
        assert!(copied.contains(&format!(" 1. {}\n", displayed[0])));
        assert!(!copied.contains("[ ]"));
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(
            file_name("alice@example.com", 1_714_566_896),
            "sparekey-recovery-codes-alice@example.com-2024-05-01-1234Z.txt"
        );
        assert_eq!(
            file_name("../etc/x y", 0),
            "sparekey-recovery-codes-_etc_x_y-1970-01-01-0000Z.txt"
        );
    }
}
