// Package zk is the coord.Backend over Apache ZooKeeper (3.5+), through
// github.com/go-zookeeper/zk, with Kafka's ZooKeeper-mode znode layout so
// that `zkCli.sh ls` shows operators what they know.
//
// # Layout (under the chroot, e.g. zookeeper.connect=zk1:2181,zk2:2181/brokkr)
//
//	/brokers/ids/<id>        ephemeral  Kafka's v5 broker JSON: endpoints, rack, host, port, ...
//	/controller              ephemeral  {"version":2,"brokerid":1,"timestamp":"...","kraftControllerEpoch":-1}
//	/controller_epoch        persistent the epoch as decimal text; its zkVersion fences controller writes
//	<key>                    persistent every metadata record at its own key, e.g.
//	                                    /brokers/topics/<t>, /brokers/topics/<t>/partitions/<p>/state
//
// A record is a znode with data (possibly empty). Missing parents are
// created as "directory" znodes with null data; they are not records.
// Delete sets the record's data to null: the znode stays as a tombstone, so
// its zkVersion never restarts (a record znode that has children, a topic
// above its partitions, simply becomes a directory). Create on a tombstone
// or directory is a conditional set that continues its zkVersion. While a
// broker is controller it sweeps tombstones and empty directories older
// than Config.TombstoneTTL (10 min).
// /controller, /controller_epoch and /brokers/ids/... belong to Register,
// WatchBrokers, Campaign and Controller: they are not Store records (List
// and Watch leave them out; Get and the writes refuse them with
// ErrInvalidKey), so the Store holds the same keys on every backend.
//
// # Versions
//
// A coord.Version is the znode's mzxid: the zxid of the transaction that
// last wrote its data (at creation it equals the czxid). Zxids are unique
// and grow across the ensemble's whole history, so a record deleted and
// created again never shows an earlier Version, which a bare zkVersion
// (back to 0 on a re-created znode) would. The creation is thereby part of
// every Version: a Version names both the incarnation and the write.
// CompareAndSet reads the stat to map the Version to the zkVersion and then
// sets conditionally on it; because deletes leave tombstones, no delete and
// re-create in between can bring the znode back to that zkVersion. Create is
// a multi of create + set so that the reply carries the stat
// (go-zookeeper has no create2); a new record's zkVersion is therefore 1.
//
// # Guarantees
//
// Writes are linearizable (ZooKeeper orders them through its leader). A
// plain ZooKeeper read may be served stale by a follower, so Get, List and
// Controller call sync first: they see every write completed before they
// began. List is not an atomic snapshot across znodes. A CompareAndSet
// whose read and write lie more than TombstoneTTL apart could in theory land
// on a record deleted, swept and created again in between; the TTL is far
// beyond the session time-out, past which the session would have ended.
//
// Fenced writes (a Leadership's Store) are multis that check
// /controller_epoch's zkVersion before the write, atomically: a controller
// superseded by a newer epoch gets coord.ErrFenced and loses leadership.
//
// # Sessions
//
// zookeeper.session.timeout.ms (default 18000, Kafka's) is asked of the
// server, which clamps it to [2, 20] x tickTime. A broker that dies
// disappears from /brokers/ids when the server expires its session: within
// the session time-out plus one tick.
//
// On a disconnect the backend gives controllership up at once (Lost is
// closed): it cannot know whether the server will expire the session before
// it reconnects, and another broker may be elected once it does. If the
// session survives, the orphaned /controller is deleted on reconnect so a
// new campaign can run. On expiry the client gets a new session; the backend
// re-creates every registration's ephemeral znode on it (Lost stays open
// unless another session took the broker id meanwhile) and resyncs every
// watch.
//
// # Watches
//
// ZooKeeper 3.8 has persistent recursive watches but go-zookeeper does not
// speak them, so a Watch walks the subtree with one-shot data and child
// watches and re-arms each one after it fires. Node events come through the
// client's event callback (its event channel drops events when full). The
// watcher re-reads every path an event names and delivers the difference as
// Put/Delete, in order per key. It delivers an EventResync with a fresh
// snapshot when it cannot show it missed nothing: after a reconnect or an
// expiry, when a zkVersion moved by more than one, when a znode was
// re-created unseen, or when a new znode had already been rewritten.
package zk
