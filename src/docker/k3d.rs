//! k3d on the Docker host: reading a k3d cluster from its containers' labels (what
//! `init --from-k3d` needs), and the k3d labels a worker of a k3d cluster's pool carries so
//! that k3d counts it as one of the cluster's agents.
//!
//! Follows k3d v5 (k3d-io/k3d): the label names are pkg/types/types.go's, `app=k3d` is
//! pkg/types/defaults.go's DefaultRuntimeLabels. k3d finds nodes by listing containers with
//! `app=k3d` AND the labels it asks for (pkg/runtimes/docker/node.go getContainersByLabel):
//! `k3d node list` asks for nothing more (pkg/client/node.go NodeList), `k3d cluster delete
//! NAME` for `k3d.cluster=NAME` (pkg/client/cluster.go ClusterGet, ClusterDelete), and it
//! removes the volumes with those two labels as well (runtimes/docker/volume.go
//! GetVolumesByLabel). The cluster's network, image volume and token are read from the
//! first node that has the label (populateClusterFieldsFromLabels), so a worker need not
//! repeat them; k3d's role comes from `k3d.role`.

use super::DockerError;
use super::client::DockerClient;
use super::labels::LABEL_MANAGED;
use super::token::JoinToken;
use bollard::query_parameters::ListContainersOptions;
use std::collections::{BTreeSet, HashMap};

/// k3d's DefaultRuntimeLabels: every object k3d manages carries it, and every k3d listing
/// filters on it.
pub const K3D_APP: (&str, &str) = ("app", "k3d");
pub const K3D_CLUSTER: &str = "k3d.cluster";
pub const K3D_ROLE: &str = "k3d.role";
/// The URL agents join (`https://k3d-NAME-server-0:6443`, ClusterCreate's connectionURL).
pub const K3D_CLUSTER_URL: &str = "k3d.cluster.url";
/// The join token, in clear text on every node k3d made. Read once by `init`; never put on
/// a worker (secrets never reach labels).
pub const K3D_CLUSTER_TOKEN: &str = "k3d.cluster.token";
pub const K3D_NETWORK: &str = "k3d.cluster.network";
pub const ROLE_SERVER: &str = "server";
pub const ROLE_AGENT: &str = "agent";

/// The labels a worker container of a k3d cluster's pool carries besides k3s-scale's own:
/// what `k3d node list` filters on (`app`), what `k3d cluster delete` filters on
/// (`k3d.cluster`), the role k3d shows and counts, and the URL and network k3d's own agents
/// carry (k3d reads a node's IP on the `k3d.cluster.network` network). Left out: the token
/// (a secret), `k3d.version` (the k3d release that made a node; k3d did not make these),
/// and the cluster-wide facts k3d reads from its own nodes (network id, IP range,
/// `network.external`, image volume, server load balancer).
pub fn worker_labels(cluster: &str, network: &str, server_url: &str) -> [(String, String); 5] {
    [
        (K3D_APP.0.into(), K3D_APP.1.into()),
        (K3D_CLUSTER.into(), cluster.into()),
        (K3D_ROLE.into(), ROLE_AGENT.into()),
        (K3D_CLUSTER_URL.into(), server_url.into()),
        (K3D_NETWORK.into(), network.into()),
    ]
}

/// The labels a worker's volume carries besides k3s-scale's own: `k3d cluster delete`
/// then removes it with the cluster, as it removes its own agents' data (anonymous volumes
/// that go with their container).
pub fn volume_labels(cluster: &str) -> [(String, String); 2] {
    [
        (K3D_APP.0.into(), K3D_APP.1.into()),
        (K3D_CLUSTER.into(), cluster.into()),
    ]
}

/// One k3d node as a container listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct K3dNode {
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
}

impl K3dNode {
    fn role(&self) -> Option<&str> {
        self.labels.get(K3D_ROLE).map(String::as_str)
    }

    /// A worker k3s-scale started for this cluster: it looks like a k3d agent, but it is
    /// not one of the cluster's own.
    fn is_k3s_scale_worker(&self) -> bool {
        self.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
    }
}

/// What k3s-scale needs of a k3d cluster to add workers to it.
#[derive(Debug, Clone, PartialEq)]
pub struct K3dCluster {
    pub name: String,
    pub network: String,
    pub server_url: String,
    /// The (first) server's image: workers run the same k3s.
    pub image: String,
    pub token: JoinToken,
    /// The cluster's own agents (k3s-scale's workers left out), by name.
    pub agents: Vec<String>,
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum K3dError {
    /// No container has `app=k3d` and `k3d.cluster=NAME`; the clusters that do exist.
    #[error(
        "no k3d cluster {name:?}: no container has the labels app=k3d and \
         {K3D_CLUSTER}={name}{}",
        clusters_found(.found)
    )]
    NoCluster { name: String, found: Vec<String> },
    #[error(
        "k3d cluster {name:?} has no server: none of its containers has \
         {K3D_ROLE}={ROLE_SERVER}"
    )]
    NoServer { name: String },
    /// A label every k3d 5 server carries is missing (or empty) on this server.
    #[error(
        "k3d cluster {name:?}: server {server} has no {label} label (k3d 5 sets it \
         on every node it creates)"
    )]
    MissingLabel {
        name: String,
        server: String,
        label: &'static str,
    },
    /// The token label holds something that is not a join token (never shown).
    #[error("the {K3D_CLUSTER_TOKEN} label of {server}: {why}")]
    BadToken { server: String, why: String },
}

/// The end of `NoCluster`'s message: the clusters this Docker host has, or that it has none.
fn clusters_found(found: &[String]) -> String {
    if found.is_empty() {
        " (no k3d cluster at all on this Docker host)".to_string()
    } else {
        format!("; k3d clusters on this Docker host: {}", found.join(", "))
    }
}

/// Reads cluster `name` from its nodes (the containers with `app=k3d` and
/// `k3d.cluster=NAME`): the first server by name gives the URL, network, token and image.
pub fn read_cluster(name: &str, nodes: &[K3dNode]) -> Result<K3dCluster, K3dError> {
    let mut ours: Vec<&K3dNode> = nodes
        .iter()
        .filter(|n| n.labels.get(K3D_CLUSTER).map(String::as_str) == Some(name))
        .collect();
    if ours.is_empty() {
        return Err(K3dError::NoCluster {
            name: name.into(),
            found: Vec::new(),
        });
    }
    ours.sort_by(|a, b| a.name.cmp(&b.name));
    let of_role = |role: &str| -> Vec<&K3dNode> {
        ours.iter()
            .copied()
            .filter(|n| n.role() == Some(role) && !n.is_k3s_scale_worker())
            .collect()
    };
    let servers = of_role(ROLE_SERVER);
    let server = *servers
        .first()
        .ok_or_else(|| K3dError::NoServer { name: name.into() })?;
    let label = |label: &'static str| -> Result<&str, K3dError> {
        match server.labels.get(label).map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(K3dError::MissingLabel {
                name: name.into(),
                server: server.name.clone(),
                label,
            }),
        }
    };
    let server_url = label(K3D_CLUSTER_URL)?.to_string();
    let network = label(K3D_NETWORK)?.to_string();
    let token = JoinToken::new(label(K3D_CLUSTER_TOKEN)?).map_err(|why| K3dError::BadToken {
        server: server.name.clone(),
        why,
    })?;
    Ok(K3dCluster {
        name: name.into(),
        network,
        server_url,
        image: server.image.clone(),
        token,
        agents: of_role(ROLE_AGENT).iter().map(|n| n.name.clone()).collect(),
        servers: servers.iter().map(|n| n.name.clone()).collect(),
    })
}

impl DockerClient {
    /// The k3d nodes on this Docker host: containers with `app=k3d` (and
    /// `k3d.cluster=NAME` when a cluster is given), in any state, as k3d lists them.
    /// Only the listing is read: no container is inspected or changed.
    pub fn k3d_nodes(&self, cluster: Option<&str>) -> Result<Vec<K3dNode>, DockerError> {
        let mut labels = vec![format!("{}={}", K3D_APP.0, K3D_APP.1)];
        if let Some(c) = cluster {
            labels.push(format!("{K3D_CLUSTER}={c}"));
        }
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_string(), labels)])),
            ..Default::default()
        };
        let api = self.api(self.timeout);
        let list = self.call(
            "listing k3d's containers",
            self.timeout,
            api.list_containers(Some(opts)),
        )?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())?;
                Some(K3dNode {
                    name,
                    image: c.image.unwrap_or_default(),
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Reads k3d cluster `name`; when there is none, the error lists the clusters there are.
    pub fn k3d_cluster(&self, name: &str) -> Result<Result<K3dCluster, K3dError>, DockerError> {
        let nodes = self.k3d_nodes(Some(name))?;
        match read_cluster(name, &nodes) {
            Err(K3dError::NoCluster { name, .. }) => {
                let found: BTreeSet<String> = self
                    .k3d_nodes(None)?
                    .into_iter()
                    .filter_map(|n| n.labels.get(K3D_CLUSTER).cloned())
                    .collect();
                Ok(Err(K3dError::NoCluster {
                    name,
                    found: found.into_iter().collect(),
                }))
            }
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cretTokenFromK3d";

    /// A node with k3d 5's labels as ClusterCreate/NodeCreate set them on agents and
    /// servers (pkg/client/cluster.go, pkg/types/node.go FillRuntimeLabels).
    fn node(name: &str, role: &str, cluster: &str) -> K3dNode {
        let labels = [
            ("app", "k3d"),
            ("k3d.version", "v5.8.3"),
            ("k3d.role", role),
            ("k3d.cluster", cluster),
            ("k3d.cluster.token", TOKEN),
            ("k3d.cluster.url", "https://k3d-dev-server-0:6443"),
            ("k3d.cluster.network", "k3d-dev"),
            ("k3d.cluster.network.external", "false"),
            ("k3d.cluster.imageVolume", "k3d-dev-images"),
            ("k3d.server.loadbalancer", "k3d-dev-serverlb"),
        ];
        K3dNode {
            name: name.into(),
            image: "rancher/k3s:v1.31.5-k3s1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn without(mut n: K3dNode, label: &str) -> K3dNode {
        n.labels.remove(label);
        n
    }

    fn managed(mut n: K3dNode) -> K3dNode {
        n.labels.insert(LABEL_MANAGED.into(), "true".into());
        n
    }

    #[test]
    fn a_cluster_reads_from_its_server_and_lists_its_own_agents() {
        let nodes = [
            node("k3d-dev-serverlb", "loadbalancer", "dev"),
            node("k3d-dev-agent-1", "agent", "dev"),
            node("k3d-dev-server-1", "server", "dev"),
            node("k3d-dev-server-0", "server", "dev"),
            node("k3d-dev-agent-0", "agent", "dev"),
            managed(node("k3d-dev-autoscaled-3", "agent", "dev")),
            node("k3d-other-agent-0", "agent", "other"),
        ];
        let c = read_cluster("dev", &nodes).unwrap();
        assert_eq!(c.network, "k3d-dev");
        assert_eq!(c.server_url, "https://k3d-dev-server-0:6443");
        assert_eq!(c.image, "rancher/k3s:v1.31.5-k3s1");
        assert_eq!(c.agents, ["k3d-dev-agent-0", "k3d-dev-agent-1"]);
        assert_eq!(c.servers, ["k3d-dev-server-0", "k3d-dev-server-1"]);
        assert_eq!(c.token, JoinToken::new(TOKEN).unwrap());
        assert!(!format!("{c:?}").contains(TOKEN), "Debug hides the token");
    }

    #[test]
    fn what_is_missing_is_named_and_the_token_never_shown() {
        let server = || node("k3d-dev-server-0", "server", "dev");
        let cases: Vec<(Vec<K3dNode>, &str)> = vec![
            (vec![], "no k3d cluster \"dev\""),
            (
                vec![node("k3d-x-server-0", "server", "x")],
                "no k3d cluster \"dev\"",
            ),
            (
                vec![
                    node("k3d-dev-agent-0", "agent", "dev"),
                    node("k3d-dev-serverlb", "loadbalancer", "dev"),
                ],
                "has no server",
            ),
            (
                vec![without(server(), K3D_CLUSTER_TOKEN)],
                "k3d.cluster.token",
            ),
            (vec![without(server(), K3D_CLUSTER_URL)], "k3d.cluster.url"),
            (vec![without(server(), K3D_NETWORK)], "k3d.cluster.network"),
        ];
        for (nodes, needle) in cases {
            let e = read_cluster("dev", &nodes).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should name {needle}");
        }
        let mut two_lines = server();
        two_lines
            .labels
            .insert(K3D_CLUSTER_TOKEN.into(), format!("{TOKEN}\n{TOKEN}"));
        let e = read_cluster("dev", &[two_lines]).unwrap_err().to_string();
        assert!(e.contains("single line") && !e.contains(TOKEN), "{e}");
    }

    #[test]
    fn no_cluster_lists_the_ones_there_are() {
        let e = K3dError::NoCluster {
            name: "dev".into(),
            found: vec!["a".into(), "b".into()],
        };
        assert!(
            e.to_string()
                .ends_with("k3d clusters on this Docker host: a, b")
        );
    }

    #[test]
    fn worker_labels_are_what_k3d_lists_and_deletes_by_and_hold_no_token() {
        let l: HashMap<_, _> = worker_labels("dev", "k3d-dev", "https://k3d-dev-server-0:6443")
            .into_iter()
            .collect();
        assert_eq!(l["app"], "k3d");
        assert_eq!(l["k3d.cluster"], "dev");
        assert_eq!(l["k3d.role"], "agent");
        assert_eq!(l["k3d.cluster.network"], "k3d-dev");
        assert!(!l.contains_key(K3D_CLUSTER_TOKEN));
        let v: HashMap<_, _> = volume_labels("dev").into_iter().collect();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v["app"].as_str(), v["k3d.cluster"].as_str()),
            ("k3d", "dev")
        );
    }
}
