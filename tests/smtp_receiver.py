#!/usr/bin/env python3
"""A real SMTP server on 127.0.0.1 for tests/alert_channels.rs, built on aiosmtpd.

Usage: smtp_receiver.py OUT_DIR MODE [CERT KEY] [USER PASSWORD]
  MODE: plain | starttls | implicit
  CERT/KEY: PEM files (starttls, implicit); "-" for none
  USER/PASSWORD: require AUTH with these (omit for none)

Prints the port it listens on (one line), then writes each received message to
OUT_DIR/msg-N.json: {"headers" (decoded, names lower-cased), "body" (decoded),
"mail_from", "rcpt_tos", "data" (raw), "tls", "login"}.
"""
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


def main():
    out, mode = sys.argv[1], sys.argv[2]
    cert = key = None
    if len(sys.argv) > 4 and sys.argv[3] != "-":
        cert, key = sys.argv[3], sys.argv[4]
    user = password = None
    if len(sys.argv) > 6:
        user, password = sys.argv[5].encode(), sys.argv[6].encode()

    ctx = None
    if cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)

    count = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            count[0] += 1
            login = session.auth_data
            tls = session.ssl is not None or (
                server.transport is not None
                and server.transport.get_extra_info("ssl_object") is not None
            )
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            rec = {
                "headers": {k.lower(): str(v) for k, v in msg.items()},
                "body": msg.get_content(),
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "tls": tls,
                "login": login.decode() if isinstance(login, bytes) else login,
            }
            tmp = os.path.join(out, f".msg-{count[0]}.tmp")
            with open(tmp, "w") as f:
                json.dump(rec, f)
            os.rename(tmp, os.path.join(out, f"msg-{count[0]}.json"))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        if auth_data.login == user and auth_data.password == password:
            return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)

    def factory():
        kw = {}
        if mode == "starttls":
            kw.update(tls_context=ctx, require_starttls=True)
        if user is not None:
            kw.update(
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=(mode != "plain"),
            )
        else:
            kw.update(auth_require_tls=False)
        return SMTP(Handler(), hostname="localhost", **kw)

    async def run():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory,
            "127.0.0.1",
            0,
            ssl=ctx if mode == "implicit" else None,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        # Exit when the test closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.read)

    asyncio.run(run())


if __name__ == "__main__":
    main()
