//! Shell completions and the man page, generated from the clap definition: every shell
//! gets a script that knows the subcommands, bash accepts its script, and the man page
//! is roff that names the commands and the exit codes.

mod ops_support;
mod support;

use std::process::Command;

fn k3s_scale(args: &[&str]) -> (i32, String, String) {
    let out = support::bin().args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SUBCOMMANDS: [&str; 7] = [
    "evaluate",
    "init",
    "status",
    "config",
    "state",
    "completions",
    "man",
];

#[test]
fn completions_for_each_shell_know_the_subcommands_and_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = k3s_scale(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.len() > 500, "{shell}: {} bytes", out.len());
        for sub in SUBCOMMANDS {
            assert!(out.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(
            out.contains("dry-run"),
            "{shell} completion lacks --dry-run"
        );
    }
    let (code, _, err) = k3s_scale(&["completions", "powershell"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
}

#[test]
fn bash_accepts_its_completion_script_and_completes_subcommands() {
    let (_, script, _) = k3s_scale(&["completions", "bash"]);
    let dir = ops_support::TempDir::new("completion");
    let path = dir.join("k3s-scale.bash");
    std::fs::write(&path, script).unwrap();
    // Source it, then ask the completion function what follows `k3s-scale ev`.
    let probe = format!(
        "source {}; COMP_WORDS=(k3s-scale ev); COMP_CWORD=1; COMP_LINE='k3s-scale ev'; COMP_POINT=12; \
         _k3s__scale k3s-scale ev k3s-scale; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "evaluate", "{stdout}");
}

#[test]
fn man_page_is_roff_naming_the_commands_and_exit_codes() {
    let (code, page, err) = k3s_scale(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        page.contains(".TH k3s-scale 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
    assert!(page.contains("Exit codes"), "the exit codes are documented");
    if ops_support::have("man") {
        let dir = ops_support::TempDir::new("man");
        let p = dir.join("k3s-scale.1");
        std::fs::write(&p, &page).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&p)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("One-shot autoscaler"));
    }
}

#[test]
fn generated_text_survives_a_reader_that_stops_early() {
    // `k3s-scale completions bash | head -1` must not panic on the broken pipe: `true`
    // exits (closing the pipe) before k3s-scale has started writing.
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "{} completions zsh | true; echo \"status=${{PIPESTATUS[0]}}\"",
                support::BIN
            ),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "status=0",
        "{err}"
    );
}
