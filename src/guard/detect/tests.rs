use super::validate::*;
use super::*;
use proptest::prelude::*;

fn det() -> &'static Detector {
    static D: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
    D.get_or_init(Detector::builtin)
}

/// (kind name, value) of every finding.
fn found(d: &Detector, text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    d.scan(text, &mut out).unwrap();
    out.iter()
        .map(|f| (d.catalog().name(f.kind).to_owned(), text[f.start..f.end].to_owned()))
        .collect()
}

fn one(text: &str, kind: &str, value: &str) {
    let got = found(det(), text);
    assert!(
        got.iter().any(|(k, v)| k == kind && v == value),
        "{text:?}: wanted {kind} {value:?}, got {got:?}"
    );
}

fn none_of(text: &str, kind: &str) {
    let got = found(det(), text);
    assert!(
        !got.iter().any(|(k, _)| k == kind),
        "{text:?}: unexpected {kind} in {got:?}"
    );
}

fn nothing(text: &str) {
    let got = found(det(), text);
    assert!(got.is_empty(), "{text:?}: unexpected {got:?}");
}

#[test]
fn luhn_and_networks() {
    assert!(luhn("4111111111111111"));
    assert!(luhn("4111 1111 1111 1111"));
    assert!(!luhn("4111111111111112"));
    assert!(!luhn("0"));
    assert!(card_network(b"4111111111111111"));
    assert!(card_network(b"5555555555554444"));
    assert!(card_network(b"2223003122003222"));
    assert!(card_network(b"378282246310005"));
    assert!(card_network(b"6011111111111117"));
    assert!(card_network(b"3530111333300000"));
    assert!(card_network(b"36227206271667"));
    assert!(card_network(b"6200000000000005"));
    assert!(card_network(b"6759649826438453"));
    assert!(!card_network(b"1234567812345670"));
    assert!(!card_network(b"411111111111111")); // Visa with 15 digits
}

#[test]
fn mod97_and_iban_table() {
    assert!(mod97("DE89370400440532013000"));
    assert!(mod97("GB82 WEST 1234 5698 7654 32"));
    assert!(!mod97("DE89370400440532013001"));
    assert!(!mod97("DE8"));
    assert_eq!(iban_len(b"DE"), Some(22));
    assert_eq!(iban_len(b"NO"), Some(15));
    assert_eq!(iban_len(b"ZZ"), None);
}

#[test]
fn ssn_rules() {
    assert!(ssn("123-45-6789"));
    assert!(!ssn("000-45-6789"));
    assert!(!ssn("666-45-6789"));
    assert!(!ssn("900-45-6789"));
    assert!(!ssn("123-00-6789"));
    assert!(!ssn("123-45-0000"));
    assert!(!ssn("123-45-67890"));
}

#[test]
fn ip_parsers() {
    assert!(ipv4("192.168.1.1"));
    assert!(ipv4("0.0.0.0"));
    assert!(!ipv4("256.1.1.1"));
    assert!(!ipv4("01.2.3.4"));
    assert!(!ipv4("1.2.3"));
    assert_eq!(ipv6("2001:db8::1", 0, 11), Some(11));
    assert_eq!(ipv6("fe80::1:", 0, 8), Some(7));
    assert_eq!(ipv6("12:30:45", 0, 8), None);
    assert_eq!(ipv6("00:1A:2B:3C:4D:5E", 0, 17), None);
}

#[test]
fn dates() {
    assert!(birth_date("12.03.1985"));
    assert!(birth_date("1985-03-12"));
    assert!(birth_date("03/12/85"));
    assert!(birth_date("12 March 1985"));
    assert!(birth_date("March 12, 1985"));
    assert!(!birth_date("32.13.1985"));
    assert!(!birth_date("12.03.1785"));
}

#[test]
fn placeholders() {
    assert!(in_placeholder("x [EMAIL_1] y", 3, 10));
    assert!(in_placeholder("[CARD_12]", 0, 9));
    assert!(!in_placeholder("[note] EMAIL_1", 7, 14));
    nothing("Write to [EMAIL_1] or call [PHONE_2]; card [CARD_12], key [API_KEY_3].");
    nothing("password: [PASSWORD_1] and \"password\": \"[PASSWORD_2]\"");
}

#[test]
fn emails() {
    one(
        "mail me at john.doe+tag@example.co.uk.",
        "EMAIL",
        "john.doe+tag@example.co.uk",
    );
    one("Kontakt: müller@beispiel.de", "EMAIL", "ller@beispiel.de"); // ASCII local parts only
    none_of("user@localhost and .@x", "EMAIL");
}

#[test]
fn phones() {
    one("Call (555) 123-4567 today", "PHONE", "(555) 123-4567");
    one("call 555-123-4567", "PHONE", "555-123-4567");
    one("Tel: +44 20 7946 0958", "PHONE", "+44 20 7946 0958");
    one("UK mobile 07700 900123.", "PHONE", "07700 900123");
    one("Ruf an: 030 12345678", "PHONE", "030 12345678");
    one("Handy +49 151 23456789", "PHONE", "+49 151 23456789");
    one("Appelez le 01 23 45 67 89", "PHONE", "01 23 45 67 89");
    one("mobile: 06.12.34.56.78", "PHONE", "06.12.34.56.78");
    one("+1-800-555-0199", "PHONE", "+1-800-555-0199");
    none_of("Order 12345 shipped 2024-01-15, total 1234.56", "PHONE");
    none_of("the date 01.02.2023 and 0123456789", "PHONE");
}

#[test]
fn cards() {
    one("card 4111 1111 1111 1111 exp 12/25", "CARD", "4111 1111 1111 1111");
    one("4111-1111-1111-1111", "CARD", "4111-1111-1111-1111");
    one("amex 3782 822463 10005", "CARD", "3782 822463 10005");
    one("mc 2223003122003222", "CARD", "2223003122003222");
    none_of("order 4111 1111 1111 1112", "CARD");
    none_of("tracking 1234567812345670", "CARD"); // Luhn-valid, no network
    none_of("ISBN 978-3-16-148410-0", "CARD");
}

#[test]
fn failed_card_can_be_a_phone() {
    // Twelve digits in phone groups: the card pattern matches first and fails.
    one("ring +44 7700 900 123", "PHONE", "+44 7700 900 123");
    one("ring 030 123 456 789", "PHONE", "030 123 456 789");
}

#[test]
fn ibans() {
    one(
        "IBAN: DE89 3704 0044 0532 0130 00 EUR",
        "IBAN",
        "DE89 3704 0044 0532 0130 00",
    );
    one("GB82WEST12345698765432", "IBAN", "GB82WEST12345698765432");
    one("FR1420041010050500013M02606", "IBAN", "FR1420041010050500013M02606");
    none_of("DE89 3704 0044 0532 0130 01", "IBAN");
}

#[test]
fn ssns() {
    one("SSN 123-45-6789", "SSN", "123-45-6789");
    one("ssn: 123456789", "SSN", "123456789");
    one("my social security number is 123 45 6789", "SSN", "123 45 6789");
    none_of("id 123456789", "SSN");
    none_of("666-12-3456 and 000-12-3456", "SSN");
}

#[test]
fn ips() {
    one("server at 192.168.0.12:8080", "IP_ADDRESS", "192.168.0.12");
    one(
        "ip 2001:db8:85a3::8a2e:370:7334 ok",
        "IP_ADDRESS",
        "2001:db8:85a3::8a2e:370:7334",
    );
    one("loopback ::1 here", "IP_ADDRESS", "::1");
    none_of("version 1.2.3.4", "IP_ADDRESS");
    none_of("v1.2.3.4 and 1.2.3.4.5 and 999.1.1.1", "IP_ADDRESS");
    none_of("at 12:30:45 the MAC 00:1A:2B:3C:4D:5E", "IP_ADDRESS");
}

#[test]
fn dobs() {
    one("I was born on 12 March 1985.", "DOB", "12 March 1985");
    one("DOB: 03/12/1985", "DOB", "03/12/1985");
    one("Date of birth 1985-03-12", "DOB", "1985-03-12");
    one("geboren am 12.03.1985 in Köln", "DOB", "12.03.1985");
    one("Geburtsdatum: 3. März 1985", "DOB", "3. März 1985");
    one("née le 5 août 1990", "DOB", "5 août 1990");
    one("nacido el 12 de marzo de 1985", "DOB", "12 de marzo de 1985");
    none_of("The meeting is on 12 March 2024.", "DOB");
    none_of("released 2021-05-04", "DOB");
}

/// Every birth-date and SSN label, in both cases, with the value a gap away and prose before:
/// the windows reach back far enough for each (`prefilter::BACK`), so a change to how far they
/// reach (or to when they reach back) fails here for the label it loses.
#[test]
fn every_label_reaches_back_to_its_value() {
    let dob = [
        "born",
        "dob",
        "d.o.b.",
        "date of birth",
        "birth date",
        "birthdate",
        "birthday",
        "geboren am",
        "geburtsdatum",
        "geburtstag",
        "geb.",
        "née",
        "nee",
        "né",
        "date de naissance",
        "nacido",
        "nacida",
        "fecha de nacimiento",
        "nato",
        "nata",
        "data di nascita",
        "data de nascimento",
        "nascido",
        "nascida",
        "geboortedatum",
    ];
    let filler = "The support ticket was opened yesterday and is still waiting. ".repeat(3);
    for label in dob {
        for l in [label.to_owned(), label.to_uppercase()] {
            let text = format!("{filler}{l}: in the small town hospital, 12.03.1985");
            one(&text, "DOB", "12.03.1985");
            let (fast, whole) = both_scans(&text);
            assert_eq!(fast, whole, "{text:?}");
        }
    }
    for label in [
        "ssn",
        "social security number",
        "social security no.",
        "social security",
    ] {
        for l in [label.to_owned(), label.to_uppercase()] {
            let text = format!("{filler}{l} is: 123456789");
            one(&text, "SSN", "123456789");
            let (fast, whole) = both_scans(&text);
            assert_eq!(fast, whole, "{text:?}");
        }
    }
}

#[test]
fn secrets() {
    one("key AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE");
    one(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SECRET_KEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    one(
        r#""private_key_id": "0123456789abcdef0123456789abcdef01234567""#,
        "GCP_KEY",
        "0123456789abcdef0123456789abcdef01234567",
    );
    one(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==;EndpointSuffix=core.windows.net",
        "AZURE_CONNECTION_STRING",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
    );
    one(
        "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",
        "API_KEY",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",
    );
    one(
        "sk-ant-api03-Xy7Zq2Wv9Rt4Lp0Mn8Bc6Dd",
        "API_KEY",
        "sk-ant-api03-Xy7Zq2Wv9Rt4Lp0Mn8Bc6Dd",
    );
    none_of("sk-this-is-not-a-real-key-at-all", "API_KEY");
    one(
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
        "GITHUB_TOKEN",
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
    );
    one(
        "glpat-xY12zW34vU56tS78rQ90",
        "GITLAB_TOKEN",
        "glpat-xY12zW34vU56tS78rQ90",
    );
    one(
        "xoxb-123456789012-abcdefABCDEF",
        "SLACK_TOKEN",
        "xoxb-123456789012-abcdefABCDEF",
    );
    one(
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "STRIPE_KEY",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    );
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    one(&format!("Bearer {jwt}"), "JWT", jwt);
}

#[test]
fn private_keys() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
    one(&format!("key:\n{pem}\nthanks"), "PRIVATE_KEY", pem);
    let escaped = r"-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n";
    let json = format!(r#"{{"private_key": "{escaped}"}}"#);
    one(
        &json,
        "PRIVATE_KEY",
        r"-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----",
    );
    one(
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQ",
        "PRIVATE_KEY",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQ",
    );
}

#[test]
fn passwords() {
    one("password=hunter2", "PASSWORD", "hunter2");
    one("Password: Tr0ub4dor&3.", "PASSWORD", "Tr0ub4dor&3");
    one(r#"{"db_password": "s3cr3t pass"}"#, "PASSWORD", "s3cr3t pass");
    one("Passwort: geheim123", "PASSWORD", "geheim123");
    one("DB_PASSWORD=Xq9!zz", "PASSWORD", "Xq9!zz");
    one("my password is Summer2024!", "PASSWORD", "Summer2024!");
    none_of("the password is incorrect, reset your password", "PASSWORD");
    none_of("password: ${DB_PASSWORD} and pwd=****", "PASSWORD");
    none_of("Enter your password in the field below.", "PASSWORD");
}

#[test]
fn non_ascii_text() {
    one(
        "Bitte überweisen Sie an DE89370400440532013000 – danke, Jürgen",
        "IBAN",
        "DE89370400440532013000",
    );
    one("请联系 zhang.wei@example.cn 谢谢", "EMAIL", "zhang.wei@example.cn");
    nothing("这是一个没有敏感信息的句子。Größe: 12 Stück, Preis 19,99 €.");
}

fn custom(name: &str, pattern: CustomPattern) -> CustomEntity {
    CustomEntity {
        name: name.into(),
        class: Class::Pii,
        pattern,
    }
}

fn regex(p: &str, validator: Validator) -> CustomPattern {
    CustomPattern::Regex {
        pattern: p.into(),
        validator,
    }
}

#[test]
fn custom_regexes_with_validators() {
    let d = Detector::new(
        &[
            custom("EMPLOYEE_ID", regex(r"(?-u:\b)EMP-[0-9]{6}(?-u:\b)", Validator::None)),
            custom(
                "LOYALTY_CARD",
                regex(r"(?-u:\b)LC(?P<v>[0-9]{10})(?-u:\b)", Validator::Luhn),
            ),
            custom(
                "ACCOUNT_REF",
                regex(r"(?-u:\b)[A-Z]{2}[0-9]{2}[A-Z0-9]{8,20}(?-u:\b)", Validator::Mod97),
            ),
        ],
        &["PERSON", "LOCATION"],
    )
    .unwrap();
    assert_eq!(
        found(&d, "id EMP-123456."),
        [("EMPLOYEE_ID".into(), "EMP-123456".into())]
    );
    assert_eq!(found(&d, "LC4111111111 x"), vec![] as Vec<(String, String)>);
    assert_eq!(
        found(&d, "LC0000000018"),
        [("LOYALTY_CARD".into(), "0000000018".into())]
    );
    assert_eq!(
        found(&d, "ref NO9386011117947"),
        [("IBAN".into(), "NO9386011117947".into())]
    );
    let k = d.catalog().kind("PERSON").unwrap();
    assert_eq!(d.catalog().class(k), Class::Pii);
    assert!(d.catalog().kind("LOCATION").is_some());
}

#[test]
fn custom_mod97_without_builtin_overlap() {
    let d = Detector::new(
        &[custom(
            "REF",
            regex(r"(?-u:\b)RF[0-9]{2}[A-Z0-9]{1,21}(?-u:\b)", Validator::Mod97),
        )],
        &[],
    )
    .unwrap();
    assert_eq!(
        found(&d, "pay ref RF18539007547034"),
        [("REF".into(), "RF18539007547034".into())]
    );
    assert!(found(&d, "pay ref RF19539007547034").is_empty());
}

#[test]
fn word_lists() {
    let words = CustomPattern::Words(vec!["Project Falcon".into(), "Müller".into(), "ACME".into()]);
    let d = Detector::new(&[custom("CODENAME", words)], &[]).unwrap();
    let got = found(&d, "project falcon at acme, with MÜLLER; not acmes or Müllers or xacme");
    let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["project falcon", "acme", "MÜLLER"]);
    assert!(found(&d, "[CODENAME_1]").is_empty());
}

#[test]
fn errors_name_the_entity() {
    let err = |c: CustomEntity| Detector::new(&[c], &[]).unwrap_err().to_string();
    let e = err(custom("BAD", regex("(unclosed", Validator::None)));
    assert!(e.starts_with("entity BAD: bad regex:") && e.contains("unclosed"), "{e}");
    let e = err(custom("EMPTY_OK", regex("a*", Validator::None)));
    assert!(e.contains("EMPTY_OK") && e.contains("empty string"), "{e}");
    let e = err(custom("lower", regex("x", Validator::None)));
    assert_eq!(e, "entity \"lower\": bad name: must match [A-Z][A-Z0-9_]*");
    let e = err(custom("EMAIL", regex("x", Validator::None)));
    assert_eq!(e, "entity EMAIL: the name is already used by a built-in entity");
    let e = err(custom("WORDS", CustomPattern::Words(vec![" ".into()])));
    assert_eq!(e, "entity WORDS: the word list is empty (or has only blank words)");
    let twice = [
        custom("X", regex("x", Validator::None)),
        custom("X", regex("y", Validator::None)),
    ];
    assert_eq!(
        Detector::new(&twice, &[]).unwrap_err().to_string(),
        "entity X: the name is defined more than once"
    );
    let e = Detector::new(&[custom("X", regex("x", Validator::None))], &["X"])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "entity X: the name is defined more than once");
    assert!(Detector::new(&[], &["EMAIL"]).is_ok());
    assert!(Detector::new(&[], &["bad name"]).is_err());
}

#[test]
fn detector_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Detector>();
}

#[test]
fn several_entities_in_order() {
    let text = "Hi, I'm at jane@corp.io or +1 (415) 555-0123; card 4111111111111111, ip 10.0.0.1.";
    let got = found(det(), text);
    let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["EMAIL", "PHONE", "CARD", "IP_ADDRESS"], "{got:?}");
}

fn check_invariants(text: &str, out: &[Finding]) {
    let mut last = 0;
    for f in out {
        assert!(f.start < f.end && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        assert!(f.start >= last, "overlap or unsorted: {out:?}");
        last = f.end;
    }
}

proptest! {
    #[test]
    fn scan_keeps_its_invariants(text in "\\PC{0,200}") {
        let mut out = Vec::new();
        det().scan(&text, &mut out).unwrap();
        check_invariants(&text, &out);
    }

    #[test]
    fn scan_keeps_its_invariants_near_entities(parts in proptest::collection::vec(piece(), 0..12)) {
        let text = parts.concat();
        let mut out = Vec::new();
        det().scan(&text, &mut out).unwrap();
        check_invariants(&text, &out);
    }
}

/// What `scan` (with the prefilter) and `scan_unfiltered` (the whole text) find in `text`.
fn both_scans(text: &str) -> (Vec<Finding>, Vec<Finding>) {
    let (mut fast, mut whole) = (Vec::new(), Vec::new());
    det().scan(text, &mut fast).unwrap();
    det().scan_unfiltered(text, &mut whole);
    (fast, whole)
}

/// Pieces a prompt is made of around the prefilter's edges: every kind of entity and trigger,
/// look-alikes, whitespace runs (ASCII and not), long words, and the two characters that fold to
/// a trigger word's letter.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("4111 1111 1111 1111".to_owned()),
        Just("4111-1111-1111-1111-1111-11".to_owned()),
        Just("jane.doe@example.com".to_owned()),
        Just("+44 20 7946 0958".to_owned()),
        Just("(0)30 1234 5678".to_owned()),
        Just("DE89 3704 0044 0532 0130 00".to_owned()),
        Just("GB29 NWBK 6016 1331 9268 19".to_owned()),
        Just("123-45-6789".to_owned()),
        Just("social security number is: 078051120".to_owned()),
        Just("192.168.10.24".to_owned()),
        Just("0151 89171695".to_owned()),
        Just("(555) 123-4567".to_owned()),
        Just("1-800-555-0199".to_owned()),
        Just("+1 (0)30 1234 5678 9".to_owned()),
        Just("030/1234567".to_owned()),
        Just("123 45 6789".to_owned()),
        Just("a.b-c@d-e.f.gh1.ij-k".to_owned()),
        Just("nato a ".to_owned()),
        Just("née le ".to_owned()),
        Just("SSN".to_owned()),
        Just("fe80::1ff:fe23:4567:890a".to_owned()),
        Just("abcd::ef".to_owned()),
        Just("born on ".to_owned()),
        Just("date of birth".to_owned()),
        Just("fecha de nacimiento: 12 de marzo de 1990".to_owned()),
        Just("3rd of September, 1985".to_owned()),
        Just("password".to_owned()),
        Just("Passwort ist ".to_owned()),
        Just("mot de passe est ".to_owned()),
        Just("CONTRASEÑA es ".to_owned()),
        Just("senha: ".to_owned()),
        Just("kennwort=".to_owned()),
        Just("pwd".to_owned()),
        Just("passenger".to_owned()),
        Just("\"db_password\": \"correct horse battery staple\"".to_owned()),
        Just(format!("\"pwd\": \"{}\"", "ab ".repeat(40).trim_end())),
        Just(" is ".to_owned()),
        Just(" = ".to_owned()),
        Just(": ".to_owned()),
        Just("Hunter!two".to_owned()),
        Just("aws_secret_access_key".to_owned()),
        Just("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEYab".to_owned()),
        Just("AKIAIOSFODNNABCDEFGH".to_owned()),
        Just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_owned()),
        Just("sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv".to_owned()),
        Just("ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ".to_owned()),
        Just("glpat-abcdefghijklmnopqrst".to_owned()),
        Just("xoxb-abcdefghijklmn".to_owned()),
        Just("sk_live_abcdefghijklmnopqr".to_owned()),
        Just("AccountKey=abcdefghijklmnopqrstuvwxyz0123==".to_owned()),
        Just("\"private_key_id\": \"abcdefabcdefabcdefabcdefabcdefabcdefabcd\"".to_owned()),
        Just("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIabc\n-----END ENCRYPTED PRIVATE KEY-----".to_owned()),
        Just("https://user:s3cr3t@db.example.com".to_owned()),
        Just("https://hooks.slack.com/services/TABCDEFGH/BABCDEFGH/abcdefghijklmnop".to_owned()),
        Just("[EMAIL_1]".to_owned()),
        Just("ſ".to_owned()),
        Just("\u{212A}".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("\n".to_owned()),
        " {1,300}",
        "[a-z]{150,200}",
        "[0-9 .:/+()-]{1,12}",
        "[A-Za-z0-9_]{1,12}",
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The prefilter's windows change what the automaton reads, never what the scan finds.
    #[test]
    fn the_prefilter_finds_what_the_whole_text_holds(
        parts in proptest::collection::vec(piece(), 0..14),
        glue in proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just(", "), Just("\n")], 14),
    ) {
        let text: String = parts.iter().zip(&glue).flat_map(|(p, g)| [p.as_str(), *g]).collect();
        let (fast, whole) = both_scans(&text);
        prop_assert_eq!(fast, whole, "{:?}", text);
    }
}

/// Text with numbers everywhere: past 256 bytes the prefilter gives way to a scan of the rest,
/// which must find what the whole-text scan does, entities on both sides of that point included.
#[test]
fn dense_text_scanned_whole_after_its_start_finds_the_same() {
    let line = "v2.4 on the 15th: 12 of 40 tests, 10% of 1,000 EUR (PR 4821) ";
    let text = format!(
        "{} jane@example.com {} card 4111 1111 1111 1111.",
        line.repeat(5),
        line.repeat(5)
    );
    assert!(text.find("jane").unwrap() > 256);
    let (fast, whole) = both_scans(&text);
    assert_eq!(fast, whole);
    let kinds: Vec<&str> = whole.iter().map(|f| det().catalog().name(f.kind)).collect();
    assert!(kinds.contains(&"EMAIL") && kinds.contains(&"CARD"), "{kinds:?}");
}

#[test]
fn an_identifier_word_in_an_earlier_sentence_does_not_hide_a_phone() {
    let d = Detector::builtin();
    let text = "Our team handled 340 tickets in March. My number is 0151 89171695 if needed.";
    let mut out = Vec::new();
    d.scan(text, &mut out).unwrap();
    let found: Vec<&str> = out.iter().map(|f| &text[f.start..f.end]).collect();
    assert_eq!(found, ["0151 89171695"]);
    // The identifier word in the same sentence still wins.
    let mut out = Vec::new();
    d.scan("Ticket number 0151 89171695 is closed.", &mut out).unwrap();
    assert!(out.is_empty(), "{out:?}");
}

/// Texts made of what the hand matchers look at: digit runs, separators, short words, parts of
/// addresses, a non-ASCII letter.
fn hand_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[0-9]{1,6}",
            "[ .()+@/_%-]",
            "[a-zA-Z]{1,4}",
            Just("\u{e9}".to_owned()),
            "[0-9]{1,3}[.][0-9]{1,4}",
            "[a-z0-9.+-]{1,5}@[a-z0-9-]{1,5}",
            "[.][a-zA-Z]{1,4}[0-9_]?",
            "[A-Z]{2}[0-9]{2}",
            "\\+[0-9]{1,4}",
            "\\(0?[0-9]{1,5}\\) ?",
            // Long chains of groups, ending in a boundary or not (the phone rows' search).
            "[+(]?0?[0-9]{1,4}\\)?([ .-]?[0-9]{1,4}){4,10}[a-z_]?",
            // Address parts near their bounds: local parts and labels of 60-66 bytes, up to
            // eleven labels, final labels of 60-66 letters.
            "[a-z0-9.]{60,66}@[a-z]{1,3}",
            "@[a-z0-9-]{60,66}",
            "@[a-z]{1,2}([.][a-z]{1,3}){6,11}",
            "[.][a-zA-Z]{60,66}",
        ],
        0..18,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Each hand matcher ends where its row's regex, anchored at the same byte, ends (or
    /// neither matches), at every position.
    #[test]
    fn hand_matchers_agree_with_the_automaton(text in hand_text()) {
        let d = det();
        prop_assert_eq!(d.hand.len(), 9);
        for &(pid, row) in &d.hand {
            let matcher = row.matcher;
            let id = PatternID::new(pid).unwrap();
            for p in (0..=text.len()).filter(|&p| text.is_char_boundary(p)) {
                let input = Input::new(&text).range(p..).anchored(Anchored::Pattern(id));
                let want = d.re.search(&input).map(|m| m.end());
                prop_assert_eq!(matcher(text.as_bytes(), p), want, "row {} at {} in {:?}", pid, p, &text);
            }
        }
    }

    /// The same texts, scanned: the windows the hand matchers take find what the whole-text
    /// scan finds.
    #[test]
    fn hand_windows_find_what_the_whole_text_holds(text in hand_text()) {
        let (fast, whole) = both_scans(&text);
        prop_assert_eq!(fast, whole, "{:?}", text);
    }
}

/// A long digit run after `+` is no phone number (no split of it into seven groups ends at a
/// boundary); the phone rows' search gives up on it after a bounded number of steps and finds
/// the number after it.
#[test]
fn a_long_digit_run_is_searched_in_bounded_steps() {
    let text = format!("call +1{} or +44 20 7946 0958", "2".repeat(300));
    let (fast, whole) = both_scans(&text);
    assert_eq!(fast, whole);
    let found: Vec<&str> = fast.iter().map(|f| &text[f.start..f.end]).collect();
    assert_eq!(found, ["+44 20 7946 0958"]);
}

/// Every label word of the birth-date and labelled-SSN patterns, any ASCII case, starts a label
/// for `hand::label_at`, which sends a window holding one back to the automaton: a label added to
/// a pattern and not there would let the hand scan miss that row's findings.
#[test]
fn the_hand_scan_knows_every_label_word() {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let ssn = patterns::ROWS
        .iter()
        .find_map(|r| r.regex.strip_prefix(r"\b(?i:ssn"))
        .and_then(|rest| rest.split(')').next())
        .map(|rest| format!("(?:ssn{rest})"))
        .unwrap();
    for source in [patterns::DOB_CONTEXT.replace("(?i:", "(?:"), ssn] {
        let hir = regex_syntax::parse(&source).unwrap();
        let words = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let words = words.literals().unwrap();
        assert!(words.len() >= 5 && words.iter().all(|w| w.is_exact()), "{words:?}");
        for w in words {
            let word = std::str::from_utf8(w.as_bytes()).unwrap();
            for text in [format!("{word} "), format!("{} ", word.to_ascii_uppercase())] {
                assert!(hand::label_at(text.as_bytes(), 0), "{text:?} ({source})");
            }
        }
    }
}

/// Crafted text whose every candidate is re-read by the next search (`Budget`): an address's
/// local part that keeps going wrong, `sk-` over and over, dotted digits. Each 48 KB of it
/// costs the unbounded scan a second or more; the scan stops within its allowance (the
/// optimised build's here, 53 ms for 48 KB) and says so.
#[test]
fn crafted_text_runs_out_of_allowance_and_says_so() {
    let d = Detector::builtin().with_allowance(Allowance::OPTIMISED);
    let crafted = [
        "a.".repeat(24 * 1024) + "a..@x.com",
        "sk-".repeat(16 * 1024),
        "1.1.".repeat(12 * 1024),
    ];
    for text in &crafted {
        let mut out = Vec::new();
        assert_eq!(d.scan(text, &mut out), Err(Overrun), "{}…", &text[..12]);
    }
}

/// Dense real text stays well inside the allowance (a table of card-like numbers that fail
/// their checksum is the costliest we know, ~100 µs per KB in a release build), and finds what
/// the whole-text scan finds.
#[test]
fn dense_real_text_is_scanned_whole_within_the_allowance() {
    let table: String = (0..3000)
        .map(|i| {
            format!(
                "{} {:04} {:04} {:04}, +49 30 {} {}\n",
                4111,
                i,
                i * 7 % 10_000,
                1112,
                1000 + i,
                20_000 + i
            )
        })
        .collect();
    let (mut fast, mut whole) = (Vec::new(), Vec::new());
    assert_eq!(det().scan(&table, &mut fast), Ok(()));
    det().scan_unfiltered(&table, &mut whole);
    assert_eq!(fast, whole);
    assert!(fast.len() > 1000, "{}", fast.len());
}

/// The clock is read only past `Budget::FREE` searches, then every `EVERY`: with no allowance at
/// all, a text needing a few searches still passes, and one needing hundreds stops.
#[test]
fn the_allowance_is_looked_at_only_after_many_searches() {
    let none = Allowance {
        base: Duration::ZERO,
        per_kb: Duration::ZERO,
    };
    let d = Detector::builtin().with_allowance(none);
    let mut out = Vec::new();
    assert_eq!(
        d.scan("mail jane@example.com or call +44 20 7946 0958", &mut out),
        Ok(())
    );
    assert_eq!(out.len(), 2);
    let many = "password: Summer2024! and 4111 1111 1111 1112, ".repeat(200);
    assert_eq!(d.scan(&many, &mut Vec::new()), Err(Overrun));
    assert_eq!(
        det().scan(&many, &mut Vec::new()),
        Ok(()),
        "the default allowance passes it"
    );
}
