//! Start-up refuses what it cannot serve, with a message that says what is wrong: a missing
//! ONNX Runtime library, and model folders whose graph, manifest or tokenizer do not agree.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["model.onnx", "tokenizer.json", "manifest.json"] {
        std::fs::copy(common::encoder_fixture().join(file), to.join(file)).unwrap();
    }
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(path, manifest.to_string()).unwrap();
}

fn load_error(dir: &Path) -> String {
    let config = common::config(dir, &[]);
    match rradistill::server::build_service(&config) {
        Ok(_) => panic!("{} loaded but should have been refused", dir.display()),
        Err(error) => format!("{error:#}"),
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("rradistill-startup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn mismatched_model_folders_are_refused_with_the_reason() {
    let dir = scratch("input");
    copy_fixture(&dir);
    edit_manifest(&dir, |m| m["inputs"]["input_ids"] = "ids".into());
    let e = load_error(&dir);
    assert!(e.contains("`ids`") && e.contains("input_ids"), "{e}");

    let dir = scratch("unmapped");
    copy_fixture(&dir);
    edit_manifest(&dir, |m| {
        m["inputs"]
            .as_object_mut()
            .unwrap()
            .remove("token_type_ids")
            .map(|_| ())
            .unwrap()
    });
    let e = load_error(&dir);
    assert!(
        e.contains("token_type_ids") && e.contains("does not map"),
        "{e}"
    );

    let dir = scratch("output");
    copy_fixture(&dir);
    edit_manifest(&dir, |m| m["output"] = "scores".into());
    let e = load_error(&dir);
    assert!(e.contains("`scores`") && e.contains("logits"), "{e}");

    let dir = scratch("kind");
    copy_fixture(&dir);
    edit_manifest(&dir, |m| m["kind"] = "classifier".into());
    let e = load_error(&dir);
    assert!(e.contains("manifest") && e.contains("kind"), "{e}");

    let dir = scratch("missing-model");
    copy_fixture(&dir);
    std::fs::remove_file(dir.join("model.onnx")).unwrap();
    let e = load_error(&dir);
    assert!(
        e.contains("model.onnx") && e.contains("does not exist"),
        "{e}"
    );

    let dir = scratch("truncated-model");
    copy_fixture(&dir);
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    std::fs::write(dir.join("model.onnx"), &bytes[..bytes.len() / 3]).unwrap();
    let e = load_error(&dir);
    assert!(e.contains("cannot load ONNX model"), "{e}");

    // A tokenizer with more tokens than the graph's embedding table.
    let dir = scratch("tokenizer");
    copy_fixture(&dir);
    let path = dir.join("tokenizer.json");
    let mut tokenizer: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    let n = vocab.len();
    for i in 0..1000 {
        vocab.insert(format!("extra{i}"), (n + i).into());
    }
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let e = load_error(&dir);
    assert!(
        e.contains("tokenizer.json does not belong to this model.onnx"),
        "{e}"
    );

    let dir = scratch("no-manifest");
    copy_fixture(&dir);
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let e = load_error(&dir);
    assert!(e.contains("manifest.json"), "{e}");

    // A load that fails after its first session opened (profiling where the nodes run)
    // leaves no profile behind: ONNX Runtime writes one when such a session is dropped. Nor
    // does one that succeeds. This test is the only one here that loads models in this
    // process, so any profile of this process still there is one of these loads'.
    let config = common::config(&common::encoder_fixture(), &[]);
    rradistill::server::build_service(&config)
        .unwrap_or_else(|e| panic!("the fixture did not load: {e:#}"));
    let left = common::profiles_left_behind();
    assert!(left.is_empty(), "profiles left behind: {left:?}");
}

#[test]
fn the_binary_exits_non_zero_naming_a_missing_runtime_library() {
    let output = Command::new(env!("CARGO_BIN_EXE_rradistill"))
        .args(["--model-dir", common::encoder_fixture().to_str().unwrap()])
        .args([
            "--ort-dylib-path",
            "/nonexistent/libonnxruntime.so.1.32.0",
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so.1.32.0"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A file that is not ONNX Runtime at all.
    let not_a_library = scratch("bogus-lib");
    std::fs::create_dir_all(&not_a_library).unwrap();
    let bogus = not_a_library.join("libonnxruntime.so");
    std::fs::write(&bogus, b"not a shared library").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rradistill"))
        .args(["--model-dir", common::encoder_fixture().to_str().unwrap()])
        .args([
            "--ort-dylib-path",
            bogus.to_str().unwrap(),
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(bogus.to_str().unwrap()) && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn the_binary_exits_non_zero_on_a_broken_model() {
    let dir = scratch("binary-broken");
    copy_fixture(&dir);
    std::fs::write(dir.join("model.onnx"), b"garbage").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rradistill"))
        .args([
            "--model-dir",
            dir.to_str().unwrap(),
            "--port",
            "0",
            "--grpc-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .args(["--ort-dylib-path", common::ort_library().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("model.onnx") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_wait_spread_or_batch_padding_out_of_range_is_refused_by_the_flag_and_by_the_models_file() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_rradistill"))
            .args(["--port", "0", "--grpc-port", "0", "--host", "127.0.0.1"])
            .args(["--ort-dylib-path", common::ort_library().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let dir = scratch("spread");
    copy_fixture(&dir);
    let models = dir.with_extension("toml");
    // Each setting out of its range, by flag and by models-file key, and what the error says.
    for (flag, flag_value, key, key_value, says) in [
        (
            "--queue-wait-spread",
            "11",
            "queue_wait_spread",
            "-1.0",
            "must be a number from 0 to 10",
        ),
        (
            "--max-batch-padding",
            "1.5",
            "max_batch_padding",
            "-0.2",
            "must be a share of the batch from 0 to 1",
        ),
    ] {
        let stderr = run(&["--model-dir", dir.to_str().unwrap(), flag, flag_value]);
        assert!(
            stderr.contains(&format!("{flag} {says}")) && !stderr.contains("panicked"),
            "{stderr}"
        );
        std::fs::write(
            &models,
            format!(
                "[[model]]\npath = \"{}\"\n{key} = {key_value}\n",
                dir.display()
            ),
        )
        .unwrap();
        let stderr = run(&["--models-file", models.to_str().unwrap()]);
        assert!(
            stderr.contains(&format!("{key} {says}")) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}
