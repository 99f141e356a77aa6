//! Deterministic graph algorithms on petgraph graphs: topological order and cycle finding.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

/// Kahn's algorithm, always taking the smallest ready index, so the order depends only on the
/// graph. On a cycle, returns the nodes of one cycle, in order.
pub fn topo_order<N, E>(g: &DiGraph<N, E, u32>) -> Result<Vec<NodeIndex<u32>>, Vec<NodeIndex<u32>>> {
    let mut indegree: Vec<usize> = g
        .node_indices()
        .map(|n| g.edges_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<u32>> = g
        .node_indices()
        .filter(|n| indegree[n.index()] == 0)
        .map(|n| Reverse(n.index() as u32))
        .collect();
    let mut order = Vec::with_capacity(g.node_count());
    while let Some(Reverse(i)) = ready.pop() {
        let n = NodeIndex::new(i as usize);
        order.push(n);
        for e in g.edges_directed(n, Direction::Outgoing) {
            let t = e.target().index();
            indegree[t] -= 1;
            if indegree[t] == 0 {
                ready.push(Reverse(t as u32));
            }
        }
    }
    if order.len() == g.node_count() {
        Ok(order)
    } else {
        Err(find_cycle(g, &indegree))
    }
}

/// One cycle among the nodes Kahn's algorithm could not order (indegree still > 0).
fn find_cycle<N, E>(g: &DiGraph<N, E, u32>, indegree: &[usize]) -> Vec<NodeIndex<u32>> {
    // Every remaining node has a remaining predecessor; walk predecessors until a node repeats.
    let Some(start) = g.node_indices().find(|n| indegree[n.index()] > 0) else {
        return Vec::new();
    };
    let mut seen = vec![usize::MAX; g.node_count()];
    let mut path: Vec<NodeIndex<u32>> = Vec::new();
    let mut cur = start;
    loop {
        if seen[cur.index()] != usize::MAX {
            let mut cycle = path[seen[cur.index()]..].to_vec();
            cycle.reverse();
            // Start the cycle at its smallest index, for stable messages.
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| n.index())
                .map_or(0, |(i, _)| i);
            cycle.rotate_left(min);
            return cycle;
        }
        seen[cur.index()] = path.len();
        path.push(cur);
        let mut preds: Vec<_> = g
            .edges_directed(cur, Direction::Incoming)
            .map(|e| e.source())
            .filter(|p| indegree[p.index()] > 0)
            .collect();
        preds.sort();
        match preds.first() {
            Some(&p) => cur = p,
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_smallest_ready_index() {
        let mut g: DiGraph<(), (), u32> = DiGraph::default();
        let a = g.add_node(());
        let b = g.add_node(());
        let c = g.add_node(());
        g.add_edge(c, a, ());
        g.add_edge(b, a, ());
        assert_eq!(topo_order(&g).unwrap(), vec![b, c, a]);
    }

    #[test]
    fn reports_the_cycle() {
        let mut g: DiGraph<(), (), u32> = DiGraph::default();
        let a = g.add_node(());
        let b = g.add_node(());
        let c = g.add_node(());
        let d = g.add_node(());
        g.add_edge(d, a, ());
        g.add_edge(a, b, ());
        g.add_edge(b, c, ());
        g.add_edge(c, a, ());
        assert_eq!(topo_order(&g).unwrap_err(), vec![a, b, c]);
    }
}
