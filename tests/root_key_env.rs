//! `SEALGATE_ROOT_KEY` is read once and taken out of the environment: no
//! later `getenv` and no child process sees it. Its own test binary, because
//! it sets a process-wide variable other tests' stores would pick up.

use base64::Engine as _;
use sealgate::keys::{KeyStore, RootKeySource, StoreOptions};

#[test]
fn the_root_key_env_var_is_taken_out_of_the_environment() {
    let text = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::env::set_var(sealgate::keys::root::ROOT_KEY_ENV, &text);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = KeyStore::open(&data, RootKeySource::Auto, StoreOptions::default()).unwrap();
    store.create_alias_key("people", "").unwrap();
    drop(store);

    assert!(
        std::env::var_os("SEALGATE_ROOT_KEY").is_none(),
        "the variable is still in the environment"
    );
    let child = std::process::Command::new("sh")
        .args(["-c", "printenv SEALGATE_ROOT_KEY"])
        .output()
        .unwrap();
    assert!(
        !child.status.success() && child.stdout.is_empty(),
        "a child process inherited the root key"
    );
    // the store is sealed under the variable's key (no key file was made),
    // and a second open in the same process still has it
    assert!(!data.join("root.key").exists());
    let again = KeyStore::open(&data, RootKeySource::Auto, StoreOptions::default()).unwrap();
    assert!(again.resolve("people").is_ok());
    drop(again);
    let by_text = KeyStore::open(&data, RootKeySource::Base64(text), StoreOptions::default());
    assert!(by_text.is_ok(), "the store opens with the env key's text");
}
