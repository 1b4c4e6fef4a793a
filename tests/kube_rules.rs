//! Table tests for the pure drain rules (src/kube/drain.rs): which pods a drain skips, which
//! pods make a node unremovable, PDB selection, and which nodes may never be removed.
//! No I/O: the stand-in is not involved.

mod support;

use k3s_scale::kube::drain::{
    self, Blocker, Skip, budget_blocker, node_unremovable, plan_pods, pod_blocker,
    selector_matches, skip_reason,
};
use std::collections::BTreeMap;
use std::time::Duration;
use support::objects::{node, pdb, pod};

#[test]
fn skip_rules() {
    let cases = [
        ("replicaset pod is moved", pod("a").on("w1").build(), None),
        (
            "daemonset pod stays",
            pod("a").on("w1").owned_by_daemonset().build(),
            Some(Skip::DaemonSet),
        ),
        (
            "mirror pod stays",
            pod("a").on("w1").mirror().build(),
            Some(Skip::Mirror),
        ),
        (
            "succeeded pod stays",
            pod("a").on("w1").phase("Succeeded").build(),
            Some(Skip::Finished),
        ),
        (
            "failed pod stays",
            pod("a").on("w1").phase("Failed").build(),
            Some(Skip::Finished),
        ),
        (
            "pending pod is moved",
            pod("a").on("w1").phase("Pending").build(),
            None,
        ),
        (
            "finished daemonset pod counts as daemonset",
            pod("a")
                .on("w1")
                .owned_by_daemonset()
                .phase("Failed")
                .build(),
            Some(Skip::DaemonSet),
        ),
        (
            "pod without controller is moved (blocked separately)",
            pod("a").on("w1").no_controller().build(),
            None,
        ),
        (
            "statefulset pod is moved",
            pod("a").on("w1").owned_by("StatefulSet", "db").build(),
            None,
        ),
    ];
    for (what, p, want) in cases {
        assert_eq!(skip_reason(&p), want, "{what}");
    }
}

#[test]
fn plan_sorts_pods_and_names_them() {
    let pods = vec![
        pod("web").on("w1").build(),
        pod("ds")
            .ns("kube-system")
            .on("w1")
            .owned_by_daemonset()
            .build(),
        pod("static").ns("kube-system").on("w1").mirror().build(),
        pod("job")
            .on("w1")
            .owned_by("Job", "j")
            .phase("Succeeded")
            .build(),
        pod("api").ns("prod").on("w1").build(),
    ];
    let plan = plan_pods(&pods);
    assert_eq!(plan.names(), vec!["default/web", "prod/api"]);
    assert_eq!(
        plan.skipped,
        vec![
            ("kube-system/ds".to_string(), Skip::DaemonSet),
            ("kube-system/static".to_string(), Skip::Mirror),
            ("default/job".to_string(), Skip::Finished),
        ]
    );
}

#[test]
fn blocker_rules() {
    let safe = "cluster-autoscaler.kubernetes.io/safe-to-evict";
    let local = |v: &str| {
        Some(Blocker::LocalStorage {
            volume: v.to_string(),
        })
    };
    let cases = [
        ("replicaset pod is fine", pod("a").build(), None),
        (
            "no owner at all",
            pod("a").no_controller().build(),
            Some(Blocker::NoController),
        ),
        (
            "an owner that is not a controller is no controller",
            pod("a").non_controller_owner().build(),
            Some(Blocker::NoController),
        ),
        (
            "hostPath",
            pod("a").host_path("data").build(),
            local("data"),
        ),
        (
            "emptyDir on disk",
            pod("a").empty_dir("scratch").build(),
            local("scratch"),
        ),
        (
            "emptyDir in memory is fine",
            pod("a").empty_dir_memory("cache").build(),
            None,
        ),
        (
            "configMap volume is fine",
            pod("a").config_map_volume("cfg").build(),
            None,
        ),
        (
            "first local volume named",
            pod("a")
                .empty_dir_memory("m")
                .host_path("h")
                .empty_dir("e")
                .build(),
            local("h"),
        ),
        (
            "safe-to-evict false",
            pod("a").annotate(safe, "false").build(),
            Some(Blocker::NotSafeToEvict),
        ),
        (
            "safe-to-evict true overrides no controller",
            pod("a").no_controller().annotate(safe, "true").build(),
            None,
        ),
        (
            "safe-to-evict true overrides local storage",
            pod("a").host_path("h").annotate(safe, "true").build(),
            None,
        ),
        (
            "safe-to-evict with another value changes nothing",
            pod("a").no_controller().annotate(safe, "yes").build(),
            Some(Blocker::NoController),
        ),
        (
            "safe-to-evict false beats a controller",
            pod("a")
                .owned_by("Deployment", "d")
                .annotate(safe, "false")
                .build(),
            Some(Blocker::NotSafeToEvict),
        ),
    ];
    for (what, p, want) in cases {
        assert_eq!(pod_blocker(&p), want, "{what}");
    }
}

#[test]
fn budget_rules() {
    let web = pod("w").label("app", "web").build();
    let web_prod = pod("w").ns("prod").label("app", "web").build();
    let budget = |pdb: &str| {
        Some(Blocker::Budget {
            pdb: pdb.to_string(),
        })
    };
    let cases = [
        ("no PDB", web.clone(), vec![], None),
        (
            "PDB allowing one",
            web.clone(),
            vec![pdb("p").selecting("app", "web").allowing(1).build()],
            None,
        ),
        (
            "PDB allowing none",
            web.clone(),
            vec![pdb("p").selecting("app", "web").allowing(0).build()],
            budget("default/p"),
        ),
        (
            "PDB without status yet counts as allowing none",
            web.clone(),
            vec![pdb("p").selecting("app", "web").build()],
            budget("default/p"),
        ),
        (
            "PDB selecting other pods",
            web.clone(),
            vec![pdb("p").selecting("app", "db").allowing(0).build()],
            None,
        ),
        (
            "PDB in another namespace",
            web_prod.clone(),
            vec![pdb("p").selecting("app", "web").allowing(0).build()],
            None,
        ),
        (
            "PDB in the pod's namespace",
            web_prod,
            vec![
                pdb("p")
                    .ns("prod")
                    .selecting("app", "web")
                    .allowing(0)
                    .build(),
            ],
            budget("prod/p"),
        ),
        (
            "empty selector matches every pod of the namespace",
            web.clone(),
            vec![pdb("all").allowing(0).build()],
            budget("default/all"),
        ),
        (
            "two budgets select it: the Eviction API refuses it whatever they allow \
             (eviction.go), both named",
            web.clone(),
            vec![
                pdb("ok").selecting("app", "web").allowing(2).build(),
                pdb("zero")
                    .expression("app", "In", &["web", "api"])
                    .allowing(0)
                    .build(),
            ],
            Some(Blocker::SeveralBudgets {
                pdbs: "default/ok, default/zero".into(),
            }),
        ),
        (
            "two budgets that both allow disruptions still block",
            web,
            vec![
                pdb("a").selecting("app", "web").allowing(2).build(),
                pdb("b").selecting("app", "web").allowing(5).build(),
            ],
            Some(Blocker::SeveralBudgets {
                pdbs: "default/a, default/b".into(),
            }),
        ),
    ];
    for (what, p, pdbs, want) in cases {
        assert_eq!(budget_blocker(&p, &pdbs), want, "{what}");
    }
}

#[test]
fn selector_expressions() {
    let labels: BTreeMap<String, String> = [
        ("app".to_string(), "web".to_string()),
        ("tier".to_string(), "front".to_string()),
    ]
    .into();
    let sel = |b: support::objects::PdbBuilder| b.build().spec.unwrap().selector.unwrap();
    let cases = [
        (
            "matchLabels hit",
            sel(pdb("x").selecting("app", "web")),
            true,
        ),
        (
            "matchLabels miss",
            sel(pdb("x").selecting("app", "db")),
            false,
        ),
        (
            "matchLabels all must hold",
            sel(pdb("x").selecting("app", "web").selecting("tier", "back")),
            false,
        ),
        (
            "In",
            sel(pdb("x").expression("tier", "In", &["front", "mid"])),
            true,
        ),
        (
            "In miss",
            sel(pdb("x").expression("tier", "In", &["back"])),
            false,
        ),
        (
            "NotIn",
            sel(pdb("x").expression("tier", "NotIn", &["back"])),
            true,
        ),
        (
            "NotIn on a missing label holds",
            sel(pdb("x").expression("zone", "NotIn", &["a"])),
            true,
        ),
        (
            "Exists",
            sel(pdb("x").expression("app", "Exists", &[])),
            true,
        ),
        (
            "DoesNotExist",
            sel(pdb("x").expression("app", "DoesNotExist", &[])),
            false,
        ),
        (
            "unknown operator matches nothing",
            sel(pdb("x").expression("app", "Like", &["w"])),
            false,
        ),
        ("empty selector matches all", sel(pdb("x")), true),
    ];
    for (what, s, want) in cases {
        assert_eq!(selector_matches(&s, &labels), want, "{what}");
    }
}

#[test]
fn blockers_of_a_plan_list_every_pod() {
    let pods = vec![
        pod("ok").on("w1").build(),
        pod("bare").on("w1").no_controller().build(),
        pod("disk").on("w1").empty_dir("tmp").build(),
        pod("ds")
            .on("w1")
            .owned_by_daemonset()
            .host_path("logs")
            .build(),
        pod("web").on("w1").label("app", "web").build(),
        pod("leaving")
            .on("w1")
            .no_controller()
            .label("app", "web")
            .terminating()
            .build(),
    ];
    let plan = plan_pods(&pods);
    let pdbs = vec![pdb("web").selecting("app", "web").allowing(0).build()];
    let found: Vec<String> = drain::blockers(&plan, Some(&pdbs))
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(
        found,
        vec![
            "pod default/bare has no controller, so it would not come back",
            "pod default/disk has local storage (volume tmp) that would be lost",
            "pod default/web PodDisruptionBudget default/web allows no disruption now",
        ],
        "a DaemonSet pod's hostPath blocks nothing (it is not moved), nor does a pod already terminating"
    );
    assert_eq!(
        plan.to_move.len(),
        5,
        "the terminating pod is still waited on"
    );
    // Without PDBs (the post-cordon recheck) only the pod rules apply.
    assert_eq!(drain::blockers(&plan, None).len(), 2);
}

#[test]
fn node_rules() {
    let permanent = vec!["keep-1".to_string()];
    let cases = [
        ("plain worker", node("w1").build(), None),
        (
            "control plane",
            node("s1").control_plane().build(),
            Some("control-plane node (label node-role.kubernetes.io/control-plane)"),
        ),
        (
            "legacy master label",
            node("s1")
                .label("node-role.kubernetes.io/master", "true")
                .build(),
            Some("control-plane node (label node-role.kubernetes.io/master)"),
        ),
        (
            "permanent",
            node("keep-1").build(),
            Some("listed in kubernetes.permanent_nodes"),
        ),
        (
            "cluster-autoscaler opt-out",
            node("w1")
                .annotate(
                    "cluster-autoscaler.kubernetes.io/scale-down-disabled",
                    "true",
                )
                .build(),
            Some("annotated cluster-autoscaler.kubernetes.io/scale-down-disabled: \"true\""),
        ),
        (
            "k3s-scale opt-out",
            node("w1")
                .annotate("k3s-scale.io/scale-down-disabled", "true")
                .build(),
            Some("annotated k3s-scale.io/scale-down-disabled: \"true\""),
        ),
        (
            "opt-out set to false is no opt-out",
            node("w1")
                .annotate("k3s-scale.io/scale-down-disabled", "false")
                .build(),
            None,
        ),
        (
            "other roles are workers",
            node("w1")
                .label("node-role.kubernetes.io/worker", "true")
                .build(),
            None,
        ),
    ];
    for (what, n, want) in cases {
        assert_eq!(node_unremovable(&n, &permanent).as_deref(), want, "{what}");
    }
}

/// Whose cordon a drain finds (issue 23 point 4): a cordon without our drain mark is an
/// operator's, one with the mark is a killed drain's, the operator's again when that drain
/// recorded that it found the node cordoned.
#[test]
fn whose_cordon_a_drain_finds() {
    use drain::{CORDONED_BEFORE_ANNOTATION as BEFORE, DRAINING_ANNOTATION as MARK};
    let since = "2026-11-27T00:00:00Z";
    let cases = [
        ("schedulable: nobody's", node("w1").build(), false),
        ("cordoned by hand", node("w1").cordoned().build(), true),
        (
            "cordoned by a killed drain",
            node("w1").cordoned().annotate(MARK, since).build(),
            false,
        ),
        (
            "cordoned by hand, then a drain was killed",
            node("w1")
                .cordoned()
                .annotate(MARK, since)
                .annotate(BEFORE, "true")
                .build(),
            true,
        ),
        (
            "marks left, but uncordoned since: nobody's",
            node("w1")
                .annotate(MARK, since)
                .annotate(BEFORE, "true")
                .build(),
            false,
        ),
        (
            "a before-mark that is not \"true\" is no before-mark",
            node("w1")
                .cordoned()
                .annotate(MARK, since)
                .annotate(BEFORE, "false")
                .build(),
            false,
        ),
    ];
    for (what, n, want) in cases {
        assert_eq!(drain::cordoned_by_someone_else(&n), want, "{what}");
    }
}

#[test]
fn grace_is_the_pods_own_capped() {
    let max = Duration::from_secs(60);
    let cases = [
        ("unset means the apiserver default 30", pod("a").build(), 30),
        ("own below the cap", pod("a").grace(5).build(), 5),
        ("own above the cap", pod("a").grace(600).build(), 60),
        ("zero stays zero", pod("a").grace(0).build(), 0),
    ];
    for (what, p, want) in cases {
        assert_eq!(drain::grace_seconds(&p, max), want, "{what}");
    }
}
