// Package etcd is the coord.Backend over etcd v3: an etcd member embedded in
// the broker (go.etcd.io/etcd/server/v3/embed; the default single-node
// setup, or one member per broker for a cluster), or an external etcd
// cluster reached through go.etcd.io/etcd/client/v3.
//
// # Layout (under Config.Prefix, "/brokkr" by default)
//
//	/brokkr/brokers/ids/<id>           BrokerInfo JSON, bound to the session's lease
//	/brokkr/controller/election/<lease> concurrency.Election keys; the oldest is the controller
//	/brokkr/controller                 {"brokerid":1,"epoch":7}, bound to the controller's lease
//	/brokkr/controller_epoch           the epoch as decimal text, never deleted
//	/brokkr/data<key>                  every metadata record, e.g. /brokkr/data/brokers/topics/t
//
// # Versions
//
// A coord.Version is the key's ModRevision: the cluster-wide revision of
// the transaction that last wrote it. Revisions only grow, so a record that
// is deleted and created again never shows an earlier Version.
// CompareAndSet and Delete are transactions comparing ModRevision; Create
// compares CreateRevision with 0.
//
// # Sessions and liveness
//
// Each Backend holds one lease (a concurrency.Session) with TTL =
// Config.SessionTimeout rounded up to whole seconds; the client renews it
// every third of the TTL and a watchdog every sixth. A broker that dies
// stops renewing and etcd deletes its keys when the lease expires: between
// TTL-TTL/3 and TTL after the death, plus up to 0.5 s for etcd's expiry
// check. The watchdog remembers when it sent the last renewal etcd
// acknowledged (etcd cannot expire the lease before then + TTL); after
// TTL-TTL/4 without one it closes the Lost channels of the registrations
// and the leadership on the lease, so a cut-off broker steps down before
// etcd can elect another controller. The next Register or Campaign grants a
// new lease (the broker re-registers itself; nothing is re-created
// silently).
//
// # Controller and fencing
//
// Campaign waits in a concurrency.Election. Once its key is the oldest, a
// transaction that compares the election key's CreateRevision (still this
// session's) and the epoch key's ModRevision raises controller_epoch by one
// and writes /controller. Every write through the Leadership's Store is a
// transaction that also compares the election key and the epoch key
// revision, so a controller whose lease expired (its key is gone) or that a
// newer epoch replaced gets coord.ErrFenced, atomically with the write:
// holding a lock is not enough (Jepsen, etcd 3.4.3), the check must be part
// of the write.
//
// # Watches
//
// Watch reads the prefix at revision R (delivered as the first
// EventResync) and watches from R+1, so nothing falls between the two. The
// etcd client resumes a broken watch stream on another member from the
// last delivered revision, so a reconnect loses nothing and needs no
// resync. When the watch cannot continue (its revision was compacted, or
// the member lost its leader: watches use WithRequireLeader) a fresh
// snapshot is read and delivered as an EventResync.
//
// # Errors
//
// Context deadlines, "no leader", leader changes, time-outs and
// unreachable endpoints become coord.ErrUnavailable; calls without a
// deadline are bounded to 5 s each so that an outage is reported rather
// than waited out.
package etcd
