//! `model_dir()` precedence. Alone in its own test binary because it changes the process
//! environment, which would race with other tests.

use std::path::PathBuf;

use tenbit_catalogue as catalogue;

#[test]
fn model_dir_precedence() {
    // SAFETY: the only test in this binary, so no other thread reads the environment meanwhile.
    unsafe {
        std::env::set_var("HOME", "/home/someone");
        std::env::set_var("XDG_CACHE_HOME", "/xdg/cache");
        std::env::set_var("TENBIT_MODEL_DIR", "/models/here");
    }
    assert_eq!(catalogue::model_dir(), PathBuf::from("/models/here"));
    let spec = catalogue::default_model();
    assert_eq!(
        catalogue::local_path(spec),
        PathBuf::from("/models/here").join(spec.file_name)
    );
    unsafe { std::env::set_var("TENBIT_MODEL_DIR", "") };
    assert_eq!(
        catalogue::model_dir(),
        PathBuf::from("/xdg/cache/tenbit/models")
    );
    // Relative XDG values are invalid per the spec and ignored.
    unsafe { std::env::set_var("XDG_CACHE_HOME", "relative/cache") };
    assert_eq!(
        catalogue::model_dir(),
        PathBuf::from("/home/someone/.cache/tenbit/models")
    );
    unsafe { std::env::remove_var("XDG_CACHE_HOME") };
    assert_eq!(
        catalogue::model_dir(),
        PathBuf::from("/home/someone/.cache/tenbit/models")
    );
}
