//! Secure links as a user meets them (docs/security.md): the client pins the registry's key
//! on first contact, refuses a registry that proves another key with a message saying how to
//! accept it, and accepts it when given `--registry-key`.

use super::*;

#[test]
fn a_changed_registry_key_is_refused_and_accepted_only_when_given() {
    let mut reg = Registry::start();
    let mut alice = reg.user("alice", &["--registry-timeout", "2s"]);
    let pins = std::fs::read_to_string(reg.dir.path().join("config/p2pchat/known_registries"))
        .expect("the registry key was pinned");
    assert!(pins.starts_with(&format!("{} sha256:", reg.tcp)), "{pins}");

    // The registry comes back with a new key (its key file lost), on the same address.
    reg.kill9();
    std::fs::remove_file(reg.dir.path().join("db.key")).unwrap();
    reg.restart();
    let refusal = alice.expect_with("the refusal", Duration::from_secs(20), |l| {
        l.contains("refused") || l == "Reconnected to registry"
    });
    assert!(refusal.starts_with("error: registry "), "{refusal}");
    assert!(refusal.contains("--registry-key sha256:"), "{refusal}");
    let new_key = refusal
        .split("--registry-key ")
        .nth(1)
        .map(str::trim)
        .expect("the new key in the message")
        .to_string();
    alice.send("/users");
    alice.expect_with("no session", Duration::from_secs(15), |l| {
        l.starts_with("error:") && !l.contains("refused")
    });
    alice.assert_no_line(|l| l == "Reconnected to registry");

    // Told the new key, a client uses the registry again (and the pin follows).
    let mut bob = reg.peer("bob", &["--registry-key", &new_key]);
    bob.send(&format!("/register bob {PASSWORD}"));
    bob.expect("Registered bob");
    let pins =
        std::fs::read_to_string(reg.dir.path().join("config/p2pchat/known_registries")).unwrap();
    assert!(pins.contains(&new_key), "{pins}");
}
