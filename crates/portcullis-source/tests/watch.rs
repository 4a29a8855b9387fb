//! The watcher reports changes: writes, atomic renames, new directories and
//! Kubernetes ConfigMap volume updates (a swapped `..data` symbolic link).

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use portcullis_source::{Watch, watch};

/// A notification must arrive within a second.
async fn expect_change(w: &mut Watch, what: &str) {
    match tokio::time::timeout(Duration::from_secs(1), w.changed()).await {
        Ok(Some(())) => {}
        Ok(None) => panic!("{what}: the watch stopped"),
        Err(_) => panic!("{what}: no notification within 1 s"),
    }
    settle(w).await;
}

/// Let the burst end, and forget what it reported.
async fn settle(w: &mut Watch) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    while w.try_recv().is_ok() {}
}

async fn expect_quiet(w: &mut Watch, what: &str) {
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), w.changed()).await {
        panic!("{what}: unexpected notification {r:?}");
    }
}

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
}

#[tokio::test]
async fn directory_writes_renames_and_new_subdirectories() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = watch(dir.path()).unwrap();
    settle(&mut w).await;
    expect_quiet(&mut w, "nothing happened").await;

    write(&dir.path().join("a.yaml"), "a: 1\n");
    expect_change(&mut w, "new file").await;

    // Reading the files (as a reload does) is not a change.
    let _ = portcullis_source::load_path(dir.path());
    expect_quiet(&mut w, "reading").await;

    write(&dir.path().join("a.yaml"), "a: 2\n");
    expect_change(&mut w, "rewrite").await;

    // An editor's save: write a temporary file, rename it over the original.
    write(&dir.path().join(".a.yaml.swp"), "a: 3\n");
    std::fs::rename(dir.path().join(".a.yaml.swp"), dir.path().join("a.yaml")).unwrap();
    expect_change(&mut w, "atomic rename").await;

    std::fs::create_dir_all(dir.path().join("x/y")).unwrap();
    expect_change(&mut w, "new directories").await;
    write(&dir.path().join("x/y/b.yaml"), "b: 1\n");
    expect_change(&mut w, "file in a new subdirectory").await;
    write(&dir.path().join("x/y/b.yaml"), "b: 2\n");
    expect_change(&mut w, "write in a new subdirectory").await;

    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    expect_change(&mut w, "removal").await;
}

#[tokio::test]
async fn single_file_rename_over_and_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    write(&file, "a: 1\n");
    let mut w = watch(&file).unwrap();
    settle(&mut w).await;

    write(&dir.path().join("unrelated.txt"), "x");
    expect_quiet(&mut w, "a sibling file").await;

    for i in 0..3 {
        let tmp = dir.path().join("config.yaml.tmp");
        write(&tmp, &format!("a: {i}\n"));
        std::fs::rename(&tmp, &file).unwrap();
        expect_change(&mut w, &format!("rename over, round {i}")).await;
    }
    std::fs::remove_file(&file).unwrap();
    expect_change(&mut w, "removed").await;
    write(&file, "a: 9\n");
    expect_change(&mut w, "created again").await;
}

/// How the kubelet updates a ConfigMap volume: a new timestamped directory,
/// a new `..data` link renamed over the old one, the old directory removed.
fn configmap_swap(dir: &Path, from: &str, to: &str, text: &str) {
    std::fs::create_dir(dir.join(to)).unwrap();
    write(&dir.join(to).join("config.yaml"), text);
    symlink(to, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(from)).unwrap();
}

fn configmap_volume(dir: &Path) {
    std::fs::create_dir(dir.join("..2024_01")).unwrap();
    write(&dir.join("..2024_01/config.yaml"), "v: 1\n");
    symlink("..2024_01", dir.join("..data")).unwrap();
    symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
}

#[tokio::test]
async fn configmap_volume_directory() {
    let dir = tempfile::tempdir().unwrap();
    configmap_volume(dir.path());
    let mut w = watch(dir.path()).unwrap();
    settle(&mut w).await;
    configmap_swap(dir.path(), "..2024_01", "..2024_02", "v: 2\n");
    expect_change(&mut w, "first swap").await;
    configmap_swap(dir.path(), "..2024_02", "..2024_03", "v: 3\n");
    expect_change(&mut w, "second swap").await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.yaml")).unwrap(),
        "v: 3\n"
    );
}

#[tokio::test]
async fn configmap_volume_single_file() {
    let dir = tempfile::tempdir().unwrap();
    configmap_volume(dir.path());
    let mut w = watch(&dir.path().join("config.yaml")).unwrap();
    settle(&mut w).await;
    for i in 2..5 {
        configmap_swap(
            dir.path(),
            &format!("..2024_0{}", i - 1),
            &format!("..2024_0{i}"),
            &format!("v: {i}\n"),
        );
        expect_change(&mut w, &format!("swap {i}")).await;
    }
}

#[tokio::test]
async fn a_missing_path_with_a_parent_is_watched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("later.yaml");
    let mut w = watch(&file).unwrap();
    settle(&mut w).await;
    write(&file, "a: 1\n");
    expect_change(&mut w, "created").await;
    assert!(watch(Path::new("/nonexistent-portcullis/a/b.yaml")).is_err());
}
