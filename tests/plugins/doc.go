// Package plugins holds end-to-end tests of retention and compaction
// policies served as plugin processes, against the real brokkr binary
// (internal/testbroker) and real Kafka clients (franz-go). TestMain builds
// the example plugins (examples/plugins/retention-committed,
// examples/plugins/compaction-latest-n) and the fault plugins in testdata/
// (crash, hang, garbage, flaky) once into a temporary brokkr.plugin.dir.
//
// What is asserted: the exact records that survive a compaction with
// compaction-latest-n (offsets unchanged), that retention-committed deletes
// exactly the segments every consumer group has committed past, and that a
// plugin that crashes, hangs or answers garbage loses no record while the
// fault is visible in the partition's status, and that a plugin that heals
// resumes deleting as its policy says.
package plugins
