"""A Sparkplug host made of pysparkplug (run by tests/interop/sparkplug in its own venv).

Subscribes to spBv1.0/# with a persistent session (paho-mqtt 1.6, QoS 1: nothing is lost while
the broker restarts) and decodes each message with pysparkplug's own `Message.from_mqtt_message`,
given the birth of the same node or device as its `Client` does (aliases resolved from the births
it saw); prints one JSON line per decoded message on stdout. Lines on stdin send:
    rebirth GROUP NODE                 NCMD Node Control/Rebirth = true
    dcmd GROUP NODE DEV POINT VALUE    DCMD with the point's value (a JSON number or boolean)
    state HOST true|false TS           the primary host's retained STATE
Every payload it sends is encoded by pysparkplug, not by us.
"""

import json
import sys
import threading
import time

import pysparkplug as sp
from paho.mqtt import client as paho


def metric(m):
    return {"name": m.name, "alias": m.alias, "datatype": m.datatype.name,
            "value": m.value, "historical": m.is_historical, "null": m.is_null,
            "timestamp": m.timestamp}


BIRTHS = {}
LOCK = threading.Lock()  # paho's thread and the main one both print: one line at a time


def say(item):
    with LOCK:
        print(json.dumps(item), flush=True)


def decode(mqtt_message):
    topic = sp.Topic.from_str(mqtt_message.topic)
    key = (topic.group_id, topic.edge_node_id, topic.device_id)
    message = sp.Message.from_mqtt_message(mqtt_message, birth=BIRTHS.get(key))
    if isinstance(message.payload, (sp.NBirth, sp.DBirth)):
        BIRTHS[key] = message.payload
    return message


def on_message(_client, _userdata, mqtt_message):
    try:
        message = decode(mqtt_message)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        say({"topic": mqtt_message.topic, "error": repr(exc)})
        return
    payload = message.payload
    out = {"topic": str(message.topic), "type": str(message.topic.message_type),
           "qos": int(message.qos), "retain": bool(message.retain)}
    if isinstance(payload, sp.NDeath):
        out["bdSeq"] = metric(payload.bd_seq_metric)
    elif isinstance(payload, sp.State):
        out.update(online=payload.online, timestamp=payload.timestamp)
    else:
        out["timestamp"] = payload.timestamp
        out["seq"] = getattr(payload, "seq", None)
        out["metrics"] = [metric(m) for m in getattr(payload, "metrics", ())]
    say(out)


def main() -> None:
    # argv: broker port, client id
    port = int(sys.argv[1])
    client = paho.Client(client_id=sys.argv[2], clean_session=False)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("spBv1.0/#", qos=1)
    client.on_subscribe = lambda *_: say({"subscribed": True})
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    client.connect("127.0.0.1", port=port)
    client.loop_start()
    for line in sys.stdin:
        words = line.split()
        now = sp.get_current_timestamp()
        if words[0] == "rebirth":
            topic = sp.Topic(message_type=sp.MessageType.NCMD, group_id=words[1],
                             edge_node_id=words[2])
            payload = sp.NCmd(timestamp=now, metrics=(sp.Metric(
                timestamp=now, name="Node Control/Rebirth", datatype=sp.DataType.BOOLEAN,
                value=True),))
        elif words[0] == "dcmd":
            value = json.loads(words[5])
            kind = sp.DataType.BOOLEAN if isinstance(value, bool) else sp.DataType.DOUBLE
            topic = sp.Topic(message_type=sp.MessageType.DCMD, group_id=words[1],
                             edge_node_id=words[2], device_id=words[3])
            payload = sp.DCmd(timestamp=now, metrics=(sp.Metric(
                timestamp=now, name=words[4], datatype=kind, value=value),))
        elif words[0] == "state":
            topic = sp.Topic(message_type=sp.MessageType.STATE, sparkplug_host_id=words[1])
            payload = sp.State(timestamp=int(words[3]), online=words[2] == "true")
        else:
            continue
        client.publish(str(topic), payload.encode(include_dtypes=True), qos=1,
                       retain=words[0] == "state")
        say({"sent": words[0]})
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
