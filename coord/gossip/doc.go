// Package gossip is the coordination backend without consensus: every broker
// is a hashicorp/memberlist member, and every member holds a full replica of
// the metadata records.
//
//   - Liveness: a broker's registration is its BrokerInfo in its memberlist
//     node metadata, so it disappears exactly when memberlist's SWIM failure
//     detector declares the node dead (or it leaves). WatchBrokers follows
//     memberlist's join/update/leave events.
//   - Records: each write gets a stamp (controller term = epoch and
//     controller broker ID, hybrid logical clock, writer node) and spreads by memberlist's broadcast queue, with
//     push/pull anti-entropy (LocalState/MergeRemoteState) repairing lost
//     messages, late joiners and healed partitions. Replicas merge by
//     last-writer-wins on the stamp; deletes leave tombstones for
//     Config.TombstoneTTL. Version is a hash of the stamp.
//   - CompareAndSet, Create and Delete check their precondition against the
//     local replica only: two members can both "win" the same
//     compare-and-set; the replicas then converge to the write with the
//     higher stamp. Not linearizable.
//   - Controller: sticky; when there is no live controller the lowest-ID
//     live candidate claims epoch = highest epoch seen + 1. Under a
//     partition each side may elect its own; after the heal the better term
//     (higher epoch; equal epochs: lower broker ID) wins, the other
//     leadership is signalled Lost, and its records lose to the winner's.
//
// The replica lives in memory and, with Config.StateFile, in a file that
// Open loads, so that a whole-cluster restart keeps records and epochs.
//
// Capabilities reports Linearizable, SingleController and FencedWrites as
// false. docs/coordination.md ("Gossip") states the guarantees, what a
// partition costs, and the timing defaults and safe range.
package gossip
