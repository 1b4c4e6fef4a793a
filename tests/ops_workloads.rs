//! The test workloads: each document deserializes into k8s-openapi's Deployment with no
//! field lost (k8s-openapi ignores unknown fields, so a typo is found by round-tripping
//! and comparing keys), images are pinned, the sizes are the ones the README promises;
//! and deploy-workloads.sh drives kubectl (or `docker exec` into the server) as it says.

mod ops_support;
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use ops_support::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn documents() -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read_repo("workloads/test-workload.yaml"))
        .expect("YAML parses")
}

/// Key paths in `original` that are missing from `typed` (what serde silently dropped).
fn lost_keys(original: &Value, typed: &Value, at: &str, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let path = format!("{at}.{k}");
                match b.get(k) {
                    Some(w) => lost_keys(v, w, &path, out),
                    None => out.push(path),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in a.iter().enumerate() {
                match b.get(i) {
                    Some(w) => lost_keys(v, w, &format!("{at}[{i}]"), out),
                    None => out.push(format!("{at}[{i}]")),
                }
            }
        }
        _ => {}
    }
}

/// Deserializes into a Deployment and fails on any field the type does not know.
fn strict_deployment(doc: &Value) -> Result<Deployment, String> {
    let d: Deployment = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&d).unwrap();
    let mut lost = Vec::new();
    lost_keys(doc, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(d)
    } else {
        Err(format!("unknown fields: {}", lost.join(", ")))
    }
}

#[test]
fn every_document_is_a_deployment_with_no_unknown_field() {
    let docs = documents();
    assert_eq!(docs.len(), 2);
    for doc in &docs {
        assert_eq!(doc["apiVersion"], "apps/v1");
        assert_eq!(doc["kind"], "Deployment");
        let d =
            strict_deployment(doc).unwrap_or_else(|e| panic!("{}: {e}", doc["metadata"]["name"]));
        let spec = d.spec;
        let selector = spec.selector.match_labels.unwrap();
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        for (k, v) in &selector {
            assert_eq!(
                labels.get(k),
                Some(v),
                "the selector matches the pod template"
            );
        }
        assert_eq!(
            labels.get("app.kubernetes.io/part-of").map(String::as_str),
            Some("k3s-scale-test"),
            "deploy-workloads.sh status selects on this"
        );
    }
}

#[test]
fn a_misspelt_field_is_caught() {
    let mut doc = documents().remove(1);
    let c = &mut doc["spec"]["template"]["spec"]["containers"][0];
    let res = c["resources"]
        .as_object_mut()
        .unwrap()
        .remove("requests")
        .unwrap();
    c["resources"]["requets"] = res;
    let e = strict_deployment(&doc).unwrap_err();
    assert!(e.contains("requets"), "{e}");
    let mut doc = documents().remove(0);
    doc["spec"]["replica"] = Value::from(3);
    assert!(
        strict_deployment(&doc)
            .unwrap_err()
            .contains(".spec.replica")
    );
    // A wrong type is refused by the typed parse itself.
    let mut doc = documents().remove(0);
    doc["spec"]["replicas"] = Value::from("two");
    assert!(strict_deployment(&doc).is_err());
}

fn container(d: &Deployment) -> k8s_openapi::api::core::v1::Container {
    d.spec.template.spec.clone().unwrap().containers[0].clone()
}

fn quantity(c: &k8s_openapi::api::core::v1::Container, kind: &str, res: &str) -> String {
    let r = c.resources.clone().unwrap();
    let map = if kind == "requests" {
        r.requests
    } else {
        r.limits
    };
    map.unwrap()[res].0.clone()
}

#[test]
fn the_workloads_are_the_ones_the_readme_describes() {
    let docs: Vec<Deployment> = documents()
        .iter()
        .map(|d| strict_deployment(d).unwrap())
        .collect();
    let by_name = |n: &str| {
        docs.iter()
            .find(|d| d.metadata.name.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no Deployment {n}"))
            .clone()
    };
    let pending = by_name("pending-pod-test");
    assert_eq!(pending.spec.replicas, Some(10));
    let c = container(&pending);
    assert_eq!(c.image.as_deref(), Some("registry.k8s.io/pause:3.10"));
    assert_eq!(quantity(&c, "requests", "cpu"), "500m");
    assert_eq!(quantity(&c, "requests", "memory"), "1Gi");

    let stress = by_name("cpu-stress");
    let c = container(&stress);
    let image = c.image.clone().unwrap();
    let tag = image.rsplit_once(':').map(|x| x.1).unwrap_or("");
    assert!(
        tag.chars().any(|ch| ch.is_ascii_digit()) && tag != "latest",
        "{image} pinned"
    );
    // It burns CPU, and only within what it asks for.
    assert!(
        c.command.clone().unwrap().join(" ").contains("while"),
        "a busy loop"
    );
    assert_eq!(
        quantity(&c, "requests", "cpu"),
        quantity(&c, "limits", "cpu")
    );
    assert!(c.resources.unwrap().limits.unwrap().contains_key("memory"));
}

/// Installs stand-ins for `kubectl` and `docker` that record their arguments and stdin,
/// so the script's choice of tool and arguments can be checked without a cluster.
fn recorder(dir: &TempDir, name: &str, exit: i32) {
    tools(dir);
    let script = format!(
        "#!/bin/sh\necho \"${{0##*/}} $*\" >> \"{log}\"\ncat >> \"{log}.stdin\"\nexit {exit}\n",
        log = dir.join("calls.log").display()
    );
    let p = dir.join(format!("bin/{name}"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The few ordinary tools the script needs, without kubectl or docker.
fn tools(dir: &TempDir) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for t in ["dirname", "cat", "sed"] {
        let target = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(t))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{t} not found"));
        let _ = std::os::unix::fs::symlink(target, dir.join(format!("bin/{t}")));
    }
}

fn run_script(
    dir: &TempDir,
    args: &[&str],
    kubeconfig: &std::path::Path,
) -> (bool, String, String) {
    let out = Command::new("/bin/bash")
        .arg(repo().join("workloads/deploy-workloads.sh"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .env("PATH", dir.join("bin"))
        .env("K3S_SCALE_KUBECONFIG", kubeconfig)
        .env("KUBECONFIG", "/nonexistent/other-cluster") // must be ignored
        .output()
        .unwrap();
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    let stdin = std::fs::read_to_string(dir.join("calls.log.stdin")).unwrap_or_default();
    let _ = std::fs::remove_file(dir.join("calls.log"));
    let _ = std::fs::remove_file(dir.join("calls.log.stdin"));
    (out.status.success(), calls, stdin)
}

#[test]
fn deploy_script_uses_the_compose_kubeconfig_then_falls_back_to_docker_exec() {
    let manifest = read_repo("workloads/test-workload.yaml");
    // With kubectl and a kubeconfig: kubectl against the published API port.
    let dir = TempDir::new("deploy");
    recorder(&dir, "kubectl", 0);
    let kc = dir.join("kubeconfig.yaml");
    std::fs::write(&kc, "apiVersion: v1\n").unwrap();
    let (ok, calls, stdin) = run_script(&dir, &[], &kc);
    assert!(ok);
    let want = format!(
        "kubectl --kubeconfig {} --server https://127.0.0.1:6443 apply -f -",
        kc.display()
    );
    assert!(calls.trim_end().ends_with(&want), "{calls}");
    assert_eq!(stdin, manifest, "the manifest goes in on stdin");
    let (ok, calls, _) = run_script(&dir, &["delete"], &kc);
    assert!(ok);
    assert!(
        calls.contains("delete --ignore-not-found=true --wait=false -f -"),
        "{calls}"
    );

    // No kubectl on the host: `docker exec` into the server container.
    let dir = TempDir::new("deploy-docker");
    recorder(&dir, "docker", 0);
    let (ok, calls, stdin) = run_script(&dir, &["apply"], &kc);
    assert!(ok);
    assert!(
        calls.contains("docker exec -i k3s-server kubectl apply -f -"),
        "{calls}"
    );
    assert_eq!(stdin, manifest);

    // Neither: a clear error, non-zero.
    let dir = TempDir::new("deploy-none");
    tools(&dir);
    let out = Command::new("/bin/bash")
        .arg(repo().join("workloads/deploy-workloads.sh"))
        .stdin(std::process::Stdio::null())
        .env("PATH", dir.join("bin"))
        .env("K3S_SCALE_KUBECONFIG", &kc)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("need kubectl"),
        "{out:?}"
    );
    // An unknown command is a usage error.
    let (ok, _, _) = run_script(&dir, &["explode"], &kc);
    assert!(!ok);
}
