//! Which node a supervised child with a placement starts on.

use multiproc_core::{NodeError, Placement, RestartPlacement};

use super::client::{self, Node};

/// Where a supervised child with `placement` starts: its node at the first start;
/// at a restart, by its restart placement (`last` is where it ran).
pub(crate) fn place(
    placement: &Placement,
    last: Option<&str>,
    restart: bool,
) -> Result<Node, NodeError> {
    let up = |name: &str| client::connected(name).filter(Node::is_up);
    let down = |name: &str| NodeError::NodeDown {
        node: name.to_string(),
        why: match client::connected(name) {
            Some(node) => node
                .down_error()
                .map_or_else(String::new, |e| e.to_string()),
            None => "not connected from this process".to_string(),
        },
    };
    if !restart || placement.restart == RestartPlacement::SameNode {
        return up(&placement.node).ok_or_else(|| down(&placement.node));
    }
    let last = last.unwrap_or(&placement.node);
    up(last)
        .or_else(|| client::live_nodes().into_iter().next())
        .ok_or_else(|| NodeError::NodeDown {
            node: last.to_string(),
            why: "no live node to restart on".to_string(),
        })
}
