//! Tests of basic authentication: htpasswd formats, hashes and the cache of checked passwords.

use std::cell::Cell;

use base64::Engine as _;

use super::*;

/// Vectors written by `openssl passwd` (and `openssl dgst` for the RFC 2307
/// schemes), so the crypt code is checked against another implementation.
const VECTORS: &[(&str, &str)] = &[
    ("p@ss word", "$apr1$sAlT1234$oxRisveopu06NEn52YXjC."),
    ("", "$apr1$xyz$Pix4eE3fQHxJjb6LqtyMK1"),
    ("secret", "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1"),
    (
        "a much longer password that spans more than sixteen bytes",
        "$1$12345678$hifp.rEPmE.zJeCzcwkzg.",
    ),
    (
        "secret",
        "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
    ),
    ("x", "$5$a$m5PPB7rYZmTs0gzCcO.9R/qmXtGr3g/5s2bl1flV9x2"),
    (
        "secret",
        "$5$rounds=1000$saltsalt$eKLZU9t9OoPWrqOQsoTIKG0aYkZ5rGOoOQhiIvoSWX2",
    ),
    (
        "secret",
        "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
    ),
    (
        // The salt is cut to 16 characters, as glibc does.
        "long password long password long password long password long password",
        "$6$rounds=1000$0123456789abcdef$90E593FIqKdUOT/WSAlTKzWaevVfTClKMY.w/mUW8ud95FV4H6NHSIEzC8tV.p4PLwPcSjvpDnHFZ8m9zSRpH1",
    ),
    ("secret", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="),
    ("secret", "{SSHA}8bX4JQDfZqtTfvnQ4ssDmWb17/FTQUxU"),
    ("secret", "{PLAIN}secret"),
];

#[test]
fn every_format_verifies_its_password_and_nothing_else() {
    for (password, stored) in VECTORS {
        let hash = PasswordHash::parse(stored).unwrap_or_else(|e| panic!("{stored}: {e}"));
        assert!(
            hash.verify(password.as_bytes()),
            "{stored} rejects {password:?}"
        );
        let mut wrong = password.as_bytes().to_vec();
        wrong.push(b'!');
        assert!(!hash.verify(&wrong), "{stored} accepts a wrong password");
        assert!(!hash.verify(b"Secret"), "{stored} accepts another case");
    }
}

#[test]
fn bcrypt_hashes_verify() {
    let stored = bcrypt::hash("hunter2", 4).unwrap();
    // htpasswd -B writes $2y$; the crate writes $2b$: the same algorithm.
    let y = stored.replacen("$2b$", "$2y$", 1);
    for s in [&stored, &y] {
        let hash = PasswordHash::parse(s).unwrap();
        assert!(hash.is_slow());
        assert!(hash.verify(b"hunter2"));
        assert!(!hash.verify(b"hunter3"));
    }
}

#[test]
fn unsupported_and_broken_hashes_are_named() {
    assert_eq!(PasswordHash::parse("rl0uE2tF/cGzA"), Err(EntryError::Des));
    assert_eq!(
        PasswordHash::parse("$argon2id$v=19$x"),
        Err(EntryError::Unknown)
    );
    assert_eq!(PasswordHash::parse("plaintext"), Err(EntryError::Unknown));
    // Hashes that would stall a request for minutes.
    let bcrypt31 = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$31$", 1);
    assert_eq!(PasswordHash::parse(&bcrypt31), Err(EntryError::TooCostly));
    assert_eq!(
        PasswordHash::parse(
            "$6$rounds=999999999$salt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1"
        ),
        Err(EntryError::TooCostly)
    );
    for broken in [
        "$apr1$nodollar",
        "$apr1$toolongsalt$oxRisveopu06NEn52YXjC.",
        "$apr1$salt$short",
        "$5$salt$short",
        "$5$rounds=x$salt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
        "$2y$05$short",
        "{SHA}not base64!",
        "{SHA}c2hvcnQ=",
        "{SSHA}c2hvcnQ=",
    ] {
        assert_eq!(
            PasswordHash::parse(broken),
            Err(EntryError::Malformed),
            "{broken}"
        );
    }
}

#[test]
fn htpasswd_files_keep_good_lines_and_number_bad_ones() {
    let text = "# made by htpasswd\n\
                alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.\n\
                \n\
                bob:rl0uE2tF/cGzA\n\
                no colon here\n\
                :{PLAIN}x\n\
                carol:{PLAIN}secret\n\
                alice:{PLAIN}second line loses\n";
    let (users, errors) = parse_htpasswd(text);
    let mut names: Vec<_> = users.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["alice", "carol"]);
    assert!(users["alice"].verify(b"p@ss word"));
    assert_eq!(
        errors,
        [
            (4, EntryError::Des),
            (5, EntryError::Shape),
            (6, EntryError::Shape)
        ]
    );
}

fn basic(user: &str, password: &str) -> Vec<u8> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}").into_bytes()
}

fn auth() -> BasicAuth {
    let (users, _) =
        parse_htpasswd("alice:$apr1$sAlT1234$oxRisveopu06NEn52YXjC.\ncarol:{PLAIN}sec:ret\n");
    BasicAuth::new("Staff \"only\"", users)
}

#[test]
fn requests_are_checked_by_their_authorization_field() {
    let auth = auth();
    let inline = |f: &dyn Fn() -> bool| f();
    assert_eq!(
        auth.check(Some(&basic("alice", "p@ss word")), inline),
        Check::Allowed
    );
    // A colon in the password belongs to it; the scheme is case-insensitive.
    assert_eq!(
        auth.check(Some(&basic("carol", "sec:ret")), inline),
        Check::Allowed
    );
    let lower = String::from_utf8(basic("carol", "sec:ret"))
        .unwrap()
        .replace("Basic", "basic");
    assert_eq!(auth.check(Some(lower.as_bytes()), inline), Check::Allowed);
    for refused in [
        None,
        Some(basic("alice", "wrong")),
        Some(basic("mallory", "p@ss word")),
        Some(basic("Alice", "p@ss word")),
        Some(b"Bearer abc".to_vec()),
        Some(b"Basic !!!".to_vec()),
        Some(b"Basic".to_vec()),
        // No colon at all.
        Some(
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice")
            )
            .into_bytes(),
        ),
    ] {
        assert_eq!(
            auth.check(refused.as_deref(), inline),
            Check::Refused,
            "{refused:?}"
        );
    }
    assert_eq!(auth.challenge, "Basic realm=\"Staff \\\"only\\\"\"");
}

#[test]
fn a_verified_password_is_not_hashed_again_but_a_wrong_one_always_is() {
    let auth = auth();
    let hashed = Cell::new(0);
    let counting = |f: &dyn Fn() -> bool| {
        hashed.set(hashed.get() + 1);
        f()
    };
    let good = basic("alice", "p@ss word");
    for _ in 0..3 {
        assert_eq!(auth.check(Some(&good), counting), Check::Allowed);
    }
    assert_eq!(hashed.get(), 1);
    for _ in 0..2 {
        assert_eq!(
            auth.check(Some(&basic("alice", "nope")), counting),
            Check::Refused
        );
    }
    assert_eq!(hashed.get(), 3);
    // Fast formats never take the slow road.
    assert_eq!(
        auth.check(Some(&basic("carol", "sec:ret")), counting),
        Check::Allowed
    );
    assert_eq!(hashed.get(), 3);
}
