"""An XMPP client for internal/xmpp's tests, on slixmpp (Debian
python3-slixmpp): it logs in as argv[1] (user@domain) with password argv[2]
and resource argv[3] on the c2s address argv[4] (host:port), then reads
commands on stdin, one per line, and writes what it receives on stdout as
one JSON object a line.

Commands: presence [SHOW [STATUS]] | unavailable | subscribe JID |
unsubscribe JID | quit. Subscription requests are approved and reported.
"""
import asyncio
import json
import sys

import slixmpp


def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self["feature_mechanisms"].unencrypted_plain = True
        self.auto_authorize = True
        self.auto_subscribe = False
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("presence_subscribe", lambda p: out(ev="subscribe", **{"from": p["from"].bare}))
        self.add_event_handler("presence_unsubscribe", lambda p: out(ev="unsubscribe", **{"from": p["from"].bare}))
        self.add_event_handler("presence_subscribed", lambda p: out(ev="subscribed", **{"from": p["from"].bare}))
        self.add_event_handler("presence_unsubscribed", lambda p: out(ev="unsubscribed", **{"from": p["from"].bare}))
        # slixmpp names the event of an available presence after its show.
        for kind in ("available", "unavailable", "away", "chat", "dnd", "xa"):
            self.add_event_handler("presence_" + kind, self.presence)

    def presence(self, p):
        status = p["status"]
        out(ev="presence", type=p["type"], show=p["show"] if p["type"] != "unavailable" else "",
            status=status, priority=p["priority"],
            **{"from": str(p["from"])})

    async def start(self, _):
        await self.get_roster()
        self.send_presence()
        out(ev="ready")
        asyncio.ensure_future(self.commands())

    async def commands(self):
        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode()
            if not line:
                line = "quit"
            words = line.strip().split(" ", 2)
            cmd = words[0]
            if cmd == "presence":
                show = words[1] if len(words) > 1 and words[1] != "-" else None
                self.send_presence(pshow=show, pstatus=words[2] if len(words) > 2 else None)
            elif cmd == "unavailable":
                self.send_presence(ptype="unavailable")
            elif cmd == "subscribe":
                self.send_presence(pto=words[1], ptype="subscribe")
            elif cmd == "unsubscribe":
                self.send_presence(pto=words[1], ptype="unsubscribe")
            elif cmd == "quit":
                self.disconnect()
                return
            out(ev="done", cmd=cmd)


def main():
    jid, password, resource, addr = sys.argv[1:5]
    host, port = addr.rsplit(":", 1)
    c = Client(jid + "/" + resource, password)
    c.add_event_handler("disconnected", lambda _: c.loop.stop())
    c.add_event_handler("failed_auth", lambda _: (out(ev="error", err="auth"), c.loop.stop()))
    c.connect(address=(host, int(port)), force_starttls=False, disable_starttls=True)
    c.loop.run_forever()


main()
