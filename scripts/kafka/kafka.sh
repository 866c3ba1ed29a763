#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft, no ZooKeeper) on 127.0.0.1 for the live-scoring
# tests and demo. The jars come from Maven Central once, at set-up (`setup`), into
# .cache/kafka; after that everything here runs offline.
#
#   scripts/kafka/kafka.sh setup            # mvn dependency:copy-dependencies -> .cache/kafka
#   scripts/kafka/kafka.sh start [DIR]      # format DIR (once) and start; waits for the port
#   scripts/kafka/kafka.sh stop  [DIR]      # SIGTERM the broker started from DIR, then SIGKILL
#   scripts/kafka/kafka.sh status [DIR]
#
# DIR (default .cache/kafka-run) holds server.properties, the log dirs, broker.pid and
# broker.log. KAFKA_PORT (default 9092) is the client port; the controller uses +1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
JARS="$ROOT/.cache/kafka"
CMD="${1:-}"
DIR="$(realpath -m "${2:-$ROOT/.cache/kafka-run}")"
PORT="${KAFKA_PORT:-9092}"
CPORT="$((PORT + 1))"
PIDFILE="$DIR/broker.pid"

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

case "$CMD" in
setup)
    if [[ -f "$JARS/.resolved" ]]; then exit 0; fi
    mkdir -p "$JARS"
    mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$JARS"
    touch "$JARS/.resolved"
    ;;
start)
    if ! ls "$JARS"/kafka_2.12-*.jar >/dev/null 2>&1; then
        echo "Kafka jars missing in $JARS: run 'make kafka-setup'" >&2
        exit 7
    fi
    if running; then echo "broker already running (pid $(cat "$PIDFILE"))"; exit 0; fi
    mkdir -p "$DIR/data"
    cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data
num.partitions=2
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
# messages up to 2 MiB so the poison-message tests can send a huge payload
message.max.bytes=2097152
replica.fetch.max.bytes=2097152
PROPS
    cat >"$DIR/log4j.properties" <<PROPS
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
PROPS
    JAVA_OPTS=(-Xmx512m -Xms128m "-Dlog4j.configuration=file:$DIR/log4j.properties")
    # Format once: a restart (the broker-restart test) must keep the topics and offsets.
    if [[ ! -f "$DIR/data/meta.properties" ]]; then
        java "${JAVA_OPTS[@]}" -cp "$JARS/*" kafka.tools.StorageTool format \
            -t "lakehound-$(printf '%s' "$DIR" | md5sum | cut -c1-16)" \
            -c "$DIR/server.properties" --ignore-formatted >>"$DIR/broker.log" 2>&1
    fi
    nohup java "${JAVA_OPTS[@]}" -cp "$JARS/*" kafka.Kafka "$DIR/server.properties" \
        >>"$DIR/broker.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 120); do
        if port_open; then echo "broker up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; exit 0; fi
        if ! running; then echo "broker exited; see $DIR/broker.log" >&2; tail -20 "$DIR/broker.log" >&2; exit 1; fi
        sleep 0.5
    done
    echo "broker did not open 127.0.0.1:$PORT within 60 s; see $DIR/broker.log" >&2
    exit 1
    ;;
stop)
    if ! running; then echo "no broker running from $DIR"; rm -f "$PIDFILE"; exit 0; fi
    PID="$(cat "$PIDFILE")"
    kill -TERM "$PID"
    for _ in $(seq 1 60); do
        if ! kill -0 "$PID" 2>/dev/null; then rm -f "$PIDFILE"; echo "broker stopped"; exit 0; fi
        sleep 0.5
    done
    kill -KILL "$PID" 2>/dev/null || true
    rm -f "$PIDFILE"
    echo "broker killed after 30 s"
    ;;
status)
    if running && port_open; then echo "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; exit 0; fi
    echo "not running"; exit 3
    ;;
*)
    echo "usage: $0 setup|start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
