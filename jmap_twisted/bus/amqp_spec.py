"""
The part of AMQP 0-9-1 that the RabbitMQ event bus speaks, as a table.

txamqp builds its frame codec and channel methods from a protocol
definition.  Rather than ship the standard's XML file, the classes, methods
and fields used here are listed in :data:`CLASSES` (numbers and field types
from the AMQP 0-9-1 specification and RabbitMQ's extensions: publisher
confirms, ``basic.nack``, ``connection.blocked``) and rendered into the
definition txamqp reads by :func:`definition`.

Field names follow txamqp's conventions where it depends on them: the
"no-wait" flag is named ``nowait`` (txamqp looks for exactly that name to
know whether to wait for a reply).  The reserved bits of
``exchange.declare`` carry the names RabbitMQ gives them (``auto-delete``,
``internal``).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

#: A field: (name, type).  Types are AMQP domains' underlying types.
Field = tuple[str, str]


class M:
    """
    One method of a class.

    :param index: the method id.
    :param fields: the method's arguments in wire order.
    :param response: the name of the method that answers it, if any.
    :param content: whether the method carries a content body.
    """

    def __init__(
        self,
        index: int,
        fields: list[Field],
        response: str | None = None,
        content: bool = False,
    ) -> None:
        self.index = index
        self.fields = fields
        self.response = response
        self.content = content


_CLOSE: list[Field] = [
    ("reply-code", "short"),
    ("reply-text", "shortstr"),
    ("class-id", "short"),
    ("method-id", "short"),
]

#: Frame types and the frame end octet.
CONSTANTS: dict[str, int] = {
    "frame-method": 1,
    "frame-header": 2,
    "frame-body": 3,
    "frame-heartbeat": 8,
    "frame-min-size": 4096,
    "frame-end": 206,
}

#: class name → (class id, content properties, methods by name).
CLASSES: dict[str, tuple[int, list[Field], dict[str, M]]] = {
    "connection": (
        10,
        [],
        {
            "start": M(
                10,
                [
                    ("version-major", "octet"),
                    ("version-minor", "octet"),
                    ("server-properties", "table"),
                    ("mechanisms", "longstr"),
                    ("locales", "longstr"),
                ],
                "start-ok",
            ),
            "start-ok": M(
                11,
                [
                    ("client-properties", "table"),
                    ("mechanism", "shortstr"),
                    ("response", "longstr"),
                    ("locale", "shortstr"),
                ],
            ),
            "secure": M(20, [("challenge", "longstr")], "secure-ok"),
            "secure-ok": M(21, [("response", "longstr")]),
            "tune": M(
                30,
                [("channel-max", "short"), ("frame-max", "long"), ("heartbeat", "short")],
                "tune-ok",
            ),
            "tune-ok": M(
                31, [("channel-max", "short"), ("frame-max", "long"), ("heartbeat", "short")]
            ),
            "open": M(
                40,
                [("virtual-host", "shortstr"), ("reserved-1", "shortstr"), ("reserved-2", "bit")],
                "open-ok",
            ),
            "open-ok": M(41, [("reserved-1", "shortstr")]),
            "close": M(50, _CLOSE, "close-ok"),
            "close-ok": M(51, []),
            "blocked": M(60, [("reason", "shortstr")]),
            "unblocked": M(61, []),
        },
    ),
    "channel": (
        20,
        [],
        {
            "open": M(10, [("reserved-1", "shortstr")], "open-ok"),
            "open-ok": M(11, [("reserved-1", "longstr")]),
            "flow": M(20, [("active", "bit")], "flow-ok"),
            "flow-ok": M(21, [("active", "bit")]),
            "close": M(40, _CLOSE, "close-ok"),
            "close-ok": M(41, []),
        },
    ),
    "exchange": (
        40,
        [],
        {
            "declare": M(
                10,
                [
                    ("reserved-1", "short"),
                    ("exchange", "shortstr"),
                    ("type", "shortstr"),
                    ("passive", "bit"),
                    ("durable", "bit"),
                    ("auto-delete", "bit"),
                    ("internal", "bit"),
                    ("nowait", "bit"),
                    ("arguments", "table"),
                ],
                "declare-ok",
            ),
            "declare-ok": M(11, []),
            "delete": M(
                20,
                [
                    ("reserved-1", "short"),
                    ("exchange", "shortstr"),
                    ("if-unused", "bit"),
                    ("nowait", "bit"),
                ],
                "delete-ok",
            ),
            "delete-ok": M(21, []),
        },
    ),
    "queue": (
        50,
        [],
        {
            "declare": M(
                10,
                [
                    ("reserved-1", "short"),
                    ("queue", "shortstr"),
                    ("passive", "bit"),
                    ("durable", "bit"),
                    ("exclusive", "bit"),
                    ("auto-delete", "bit"),
                    ("nowait", "bit"),
                    ("arguments", "table"),
                ],
                "declare-ok",
            ),
            "declare-ok": M(
                11,
                [("queue", "shortstr"), ("message-count", "long"), ("consumer-count", "long")],
            ),
            "bind": M(
                20,
                [
                    ("reserved-1", "short"),
                    ("queue", "shortstr"),
                    ("exchange", "shortstr"),
                    ("routing-key", "shortstr"),
                    ("nowait", "bit"),
                    ("arguments", "table"),
                ],
                "bind-ok",
            ),
            "bind-ok": M(21, []),
            "purge": M(
                30,
                [("reserved-1", "short"), ("queue", "shortstr"), ("nowait", "bit")],
                "purge-ok",
            ),
            "purge-ok": M(31, [("message-count", "long")]),
            "delete": M(
                40,
                [
                    ("reserved-1", "short"),
                    ("queue", "shortstr"),
                    ("if-unused", "bit"),
                    ("if-empty", "bit"),
                    ("nowait", "bit"),
                ],
                "delete-ok",
            ),
            "delete-ok": M(41, [("message-count", "long")]),
            "unbind": M(
                50,
                [
                    ("reserved-1", "short"),
                    ("queue", "shortstr"),
                    ("exchange", "shortstr"),
                    ("routing-key", "shortstr"),
                    ("arguments", "table"),
                ],
                "unbind-ok",
            ),
            "unbind-ok": M(51, []),
        },
    ),
    "basic": (
        60,
        [
            ("content-type", "shortstr"),
            ("content-encoding", "shortstr"),
            ("headers", "table"),
            ("delivery-mode", "octet"),
            ("priority", "octet"),
            ("correlation-id", "shortstr"),
            ("reply-to", "shortstr"),
            ("expiration", "shortstr"),
            ("message-id", "shortstr"),
            ("timestamp", "timestamp"),
            ("type", "shortstr"),
            ("user-id", "shortstr"),
            ("app-id", "shortstr"),
            ("cluster-id", "shortstr"),
        ],
        {
            "qos": M(
                10,
                [("prefetch-size", "long"), ("prefetch-count", "short"), ("global", "bit")],
                "qos-ok",
            ),
            "qos-ok": M(11, []),
            "consume": M(
                20,
                [
                    ("reserved-1", "short"),
                    ("queue", "shortstr"),
                    ("consumer-tag", "shortstr"),
                    ("no-local", "bit"),
                    ("no-ack", "bit"),
                    ("exclusive", "bit"),
                    ("nowait", "bit"),
                    ("arguments", "table"),
                ],
                "consume-ok",
            ),
            "consume-ok": M(21, [("consumer-tag", "shortstr")]),
            "cancel": M(30, [("consumer-tag", "shortstr"), ("nowait", "bit")], "cancel-ok"),
            "cancel-ok": M(31, [("consumer-tag", "shortstr")]),
            "publish": M(
                40,
                [
                    ("reserved-1", "short"),
                    ("exchange", "shortstr"),
                    ("routing-key", "shortstr"),
                    ("mandatory", "bit"),
                    ("immediate", "bit"),
                ],
                content=True,
            ),
            "return": M(
                50,
                [
                    ("reply-code", "short"),
                    ("reply-text", "shortstr"),
                    ("exchange", "shortstr"),
                    ("routing-key", "shortstr"),
                ],
                content=True,
            ),
            "deliver": M(
                60,
                [
                    ("consumer-tag", "shortstr"),
                    ("delivery-tag", "longlong"),
                    ("redelivered", "bit"),
                    ("exchange", "shortstr"),
                    ("routing-key", "shortstr"),
                ],
                content=True,
            ),
            "ack": M(80, [("delivery-tag", "longlong"), ("multiple", "bit")]),
            "reject": M(90, [("delivery-tag", "longlong"), ("requeue", "bit")]),
            "recover": M(110, [("requeue", "bit")], "recover-ok"),
            "recover-ok": M(111, []),
            "nack": M(120, [("delivery-tag", "longlong"), ("multiple", "bit"), ("requeue", "bit")]),
        },
    ),
    "confirm": (
        85,
        [],
        {
            "select": M(10, [("nowait", "bit")], "select-ok"),
            "select-ok": M(11, []),
        },
    ),
}


def definition() -> str:
    """
    The protocol definition in the XML form that ``txamqp.spec`` loads.
    """
    lines = ['<?xml version="1.0"?>', '<amqp major="0" minor="9" port="5672">']
    for name, value in CONSTANTS.items():
        lines.append(f"<constant name={quoteattr(name)} value={quoteattr(str(value))}/>")
    for class_name, (index, properties, methods) in CLASSES.items():
        lines.append(
            f'<class name={quoteattr(class_name)} index={quoteattr(str(index))} handler="channel">'
        )
        lines.extend(_fields(properties))
        for method_name, method in methods.items():
            attributes = f"name={quoteattr(method_name)} index={quoteattr(str(method.index))}"
            if method.content:
                attributes += ' content="1"'
            if method.response:
                attributes += ' synchronous="1"'
            lines.append(f"<method {attributes}>{class_name}.{method_name}")
            if method.response:
                lines.append(f"<response name={quoteattr(method.response)}/>")
            lines.extend(_fields(method.fields))
            lines.append("</method>")
        lines.append("</class>")
    lines.append("</amqp>")
    return "\n".join(lines)


def _fields(fields: list[Field]) -> list[str]:
    return [f"<field name={quoteattr(name)} type={quoteattr(kind)}/>" for name, kind in fields]
