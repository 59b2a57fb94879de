# A confluent-kafka (librdkafka) member of a consumer group, driven by
# tests/compat/groups_test.go. It never exits by itself before its deadline:
# the test kills it with SIGKILL.
#
# Usage: group_member.py BOOTSTRAP TOPIC GROUP ASSIGNOR DEADLINE_S COMMIT_DELAY_S
#
# Every line it prints is flushed at once:
#   assigned P,P,...      after a (re)assignment
#   revoked P,P,...       before partitions are taken away
#   rec P OFFSET VALUE    each record consumed, before its offset is committed
#   committing P:O,P:O    just before a synchronous commit (COMMIT_DELAY_S
#                         after the batch's records, so a kill often lands
#                         between a batch and its commit)
#   commit P:O,P:O        after a synchronous commit the broker confirmed
#   error TEXT            a consume or commit error (the test fails on it)
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

addr, topic, group, assignor = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
deadline, commit_delay = float(sys.argv[5]), float(sys.argv[6])


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def on_assign(consumer, parts):
    say("assigned " + ",".join(str(p.partition) for p in parts))


def on_revoke(consumer, parts):
    say("revoked " + ",".join(str(p.partition) for p in parts))


c = Consumer({
    "bootstrap.servers": addr,
    "group.id": group,
    "client.id": "python-member",
    "partition.assignment.strategy": assignor,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "fetch.wait.max.ms": 100,
})
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
end = time.time() + deadline
while time.time() < end:
    msgs = c.consume(num_messages=200, timeout=0.2)
    last = {}
    for m in msgs:
        if m.error():
            say("error consume: %s" % m.error())
            continue
        say("rec %d %d %s" % (m.partition(), m.offset(), m.value().decode()))
        last[m.partition()] = m.offset() + 1
    if not last:
        continue
    time.sleep(commit_delay)
    say("committing " + ",".join("%d:%d" % (p, o) for p, o in sorted(last.items())))
    try:
        done = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in sorted(last.items())], asynchronous=False)
    except KafkaException as e:
        say("error commit: %s" % e)
        continue
    ok = ["%d:%d" % (tp.partition, tp.offset) for tp in done if tp.error is None]
    bad = ["%d:%s" % (tp.partition, tp.error) for tp in done if tp.error is not None]
    if ok:
        say("commit " + ",".join(ok))
    if bad:
        say("error commit: " + ",".join(bad))
c.close()
