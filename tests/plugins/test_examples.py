#!/usr/bin/python3
"""The hook examples of contrib/plugins/, each built out of the tree with its own
Makefile against chatd installed into a DESTDIR (meson install --destdir), and
run in that installed chatd beside its installed plugins:

* wordfilter rejects, or masks, the words of its list in writes and edits, and
  reads the list again on SIGHUP (keeping it when the file is gone);
* echobot answers "/echo text" in the channels it is a member of, and only
  there, accepts friend invitations, and finds its user again after a restart.

(The echo example's test is InstalledPluginTests in test_plugins.py.)
"""

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from domain import ADDR_LIMIT_SET, DomainTestCase, async_test, chan, fetch_all_messages  # noqa
from test_plugins import MESSAGE_PLUGINS, ConfServer, Installed, sh, start_fails, write_conf  # noqa

EXAMPLES = ("wordfilter", "echobot")
INSTALL = None  # the Installed chatd of this module
BUILT = {}  # example name -> its .so
TMP = None


def setUpModule():
    global INSTALL, TMP
    TMP = tempfile.mkdtemp(prefix="chatd-examples-")
    INSTALL = Installed(TMP)
    for name in EXAMPLES:
        BUILT[name] = INSTALL.build(TMP, name)


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def wait_log(srv, text, timeout=5.0):
    """Wait until the server's log holds text."""
    deadline = time.monotonic() + timeout
    while text not in srv.log_text():
        if time.monotonic() > deadline:
            raise AssertionError("no %r in the log:\n%s" % (text, srv.log_tail()))
        time.sleep(0.05)


class ExampleCase(DomainTestCase):
    """The installed chatd with the message plugins and ENTRY, a plugins entry
    for EXAMPLE (%(so)s: its built file, %(tmp)s: the class's folder, which
    holds the data directory)."""

    EXAMPLE = None
    ENTRY = None

    @classmethod
    def prepare(cls):
        """Write the files ENTRY names, before the start."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-example-", dir=TMP)
        cls.data_dir = os.path.join(cls.tmp, "data")
        os.makedirs(cls.data_dir)
        cls.prepare()
        cls.conf = write_conf(cls.tmp, MESSAGE_PLUGINS + [
            cls.ENTRY % {"so": BUILT[cls.EXAMPLE], "tmp": cls.tmp}])
        cls.server = cls.start_server()

    @classmethod
    def start_server(cls):
        return ConfServer(INSTALL.binary, cls.conf, INSTALL.sets + [ADDR_LIMIT_SET],
                          data_dir=cls.data_dir).start()

    async def room(self, *members):
        """A group channel of a fresh writer with members (Users), the writer's
        client entered in it."""
        writer = self.user("w")
        cid = await self.channel_with(writer, *members)
        cw = await self.connect(writer)
        await self.enter(cw, cid)
        return cid, cw


class WordfilterMaskTests(ExampleCase):
    EXAMPLE = "wordfilter"
    ENTRY = ('{ name = "wordfilter"; path = "%(so)s"; file = "%(tmp)s/words.txt";'
             ' action = "mask"; }')

    @classmethod
    def prepare(cls):
        cls.words_file = os.path.join(cls.tmp, "words.txt")
        with open(cls.words_file, "w") as f:
            f.write("# the list\ndarn\nFrak\n\n")

    def readings(self):
        """How many times the list was read, or found unreadable."""
        log = self.server.log_text()
        return log.count(" words from " + self.words_file) + log.count("cannot read ")

    def reload(self, words):
        """Write the list (None: remove the file) and send SIGHUP; wait for its reading."""
        before = self.readings()
        if words is None:
            os.unlink(self.words_file)
        else:
            with open(self.words_file, "w") as f:
                f.write("".join(w + "\n" for w in words))
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while self.readings() == before:
            self.assertLess(time.monotonic(), deadline, "the list was not read again")
            time.sleep(0.05)

    @async_test
    async def test_listed_words_are_masked_whole_and_in_any_case(self):
        member = self.user("m")
        cid, cw = await self.room(member)
        cm = await self.connect(member)
        await self.enter(cm, cid)
        await self.write(cw, cid, "Darn, that frakking FRAK! darn_it über darn")
        note = await cm.expect("NOTIFY_MESSAGE")
        self.assertEqual(note["content"], "****, that frakking ****! darn_it über ****")
        resp = await cw.request("EDIT_MESSAGE", {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": "well, darn"})
        self.assertOk(resp, "EDIT_MESSAGE_ACK")
        self.assertEqual((await cm.expect("NOTIFY_MESSAGE_EDITED"))["content"], "well, ****")
        await self.write(cw, cid, "nothing to hide")
        self.assertEqual([m["content"] for m in await fetch_all_messages(cw, cid)],
                         ["well, ****", "nothing to hide"])

    @async_test
    async def test_the_list_is_read_again_on_sighup_and_kept_when_unreadable(self):
        cid, cw = await self.room(self.user("m"))
        self.reload(["heck", "grüß", "x" * 300])  # a line too long for a word is skipped
        self.assertIn("2 words from %s" % self.words_file, self.server.log_text())
        self.assertIn("a line of more than 254 bytes is skipped", self.server.log_text())
        await self.write(cw, cid, "heck, darn, grüß")
        self.reload(None)  # gone: the list in use stays
        self.assertIn("cannot read %s" % self.words_file, self.server.log_text())
        await self.write(cw, cid, "heck again")
        self.reload(["darn", "frak"])
        await self.write(cw, cid, "heck darn")
        self.assertEqual([m["content"] for m in await fetch_all_messages(cw, cid)],
                         ["****, darn, ****", "**** again", "heck ****"])
        self.assertServerUp()


class WordfilterRejectTests(ExampleCase):
    EXAMPLE = "wordfilter"
    # the default action is reject; a relative file is read from the data directory
    ENTRY = '{ name = "wordfilter"; path = "%(so)s"; file = "words.txt"; }'

    @classmethod
    def prepare(cls):
        with open(os.path.join(cls.data_dir, "words.txt"), "w") as f:
            f.write("darn\n")

    @async_test
    async def test_a_listed_word_rejects_the_message(self):
        cid, cw = await self.room(self.user("m"))
        resp = await cw.request("WRITE_MESSAGE", {"channelId": chan(cid), "content": "oh darn"},
                                rid="w1")
        self.assertErr(resp, "FORBIDDEN", "WRITE_MESSAGE", "w1")
        self.assertEqual((await self.write(cw, cid, "oh dear"))["messageSequence"], 1)
        resp = await cw.request("EDIT_MESSAGE", {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": "DARN"})
        self.assertErr(resp, "FORBIDDEN", "EDIT_MESSAGE")
        self.assertEqual([m["content"] for m in await fetch_all_messages(cw, cid)], ["oh dear"])
        _, _, metrics = self.server.request("GET", "/metrics")
        self.assertIn(b"chatd_wordfilter_rejected_total 2", metrics)


class WordfilterSettingsTests(unittest.TestCase):
    def test_settings_are_checked_before_start(self):
        tmp = tempfile.mkdtemp(prefix="chatd-example-", dir=TMP)
        so = BUILT["wordfilter"]
        conf = write_conf(tmp, MESSAGE_PLUGINS + [
            '{ name = "wordfilter"; path = "%s"; file = "w"; action = "shout"; }' % so])
        code, out = start_fails(INSTALL.binary, conf, INSTALL.sets)
        self.assertNotEqual(code, 0)
        self.assertIn("setting 'plugins.wordfilter.action'", out)
        conf = write_conf(tmp, MESSAGE_PLUGINS + ['{ name = "wordfilter"; path = "%s"; }' % so])
        code, out = start_fails(INSTALL.binary, conf, INSTALL.sets)
        self.assertNotEqual(code, 0)
        self.assertIn("setting 'file' is required", out)
        conf = write_conf(tmp, MESSAGE_PLUGINS + [
            '{ name = "wordfilter"; path = "%s"; file = "/nonexistent/words"; }' % so])
        code, out = start_fails(INSTALL.binary, conf, INSTALL.sets)
        self.assertNotEqual(code, 0)
        self.assertIn("cannot read /nonexistent/words", out)


class EchobotTests(ExampleCase):
    EXAMPLE = "echobot"
    ENTRY = '{ name = "echobot"; path = "%(so)s"; store = "sqlite"; username = "echobot"; }'

    @async_test
    async def test_answers_echo_where_it_is_a_member_and_finds_itself_after_a_restart(self):
        wait_log(self.server, "no user echobot yet")
        bot = self.server.register("echobot")
        wait_log(self.server, "answering as echobot (user %d)" % bot["userId"])
        alice, bob = self.user("alice"), self.user("bob")
        ca = await self.connect(alice)
        # the bot accepts an invitation as it comes
        resp = await ca.request("INVITE_REQUEST", {"userInviteCode": bot["inviteCode"]})
        self.assertOk(resp, "INVITE_RESPONSE")
        self.assertEqual((await ca.expect("NOTIFY_ACCEPT"))["username"], "echobot")
        resp = await ca.request("CREATE_REQUEST", {"title": "with the bot",
                                                   "participantUsernames": ["echobot"]})
        cid = self.cid_of(resp)
        await self.enter(ca, cid)
        ack = await self.write(ca, cid, "/echo hello there")
        note = await ca.expect("NOTIFY_MESSAGE")
        self.assertEqual((note["username"], note["content"], note["replyTo"],
                          note["messageSequence"]),
                         ("echobot", "hello there", ack["messageSequence"],
                          ack["messageSequence"] + 1))
        for content in ("/echoing", "/echo ", "echo /echo x", "plain"):
            await self.write(ca, cid, content)
        await ca.expect_none("NOTIFY_MESSAGE", 0.5)
        # a channel without the bot: no answer there
        await self.befriend(alice, bob)
        other = await self.create_group(ca, [bob])
        await self.enter(ca, other)
        await self.write(ca, other, "/echo anyone?")
        await ca.expect_none("NOTIFY_MESSAGE", 0.5)
        self.assertEqual(len(await fetch_all_messages(ca, other)), 1)
        await ca.close()
        # restarted, it finds its user in the store
        type(self).server.stop()
        type(self).server = self.start_server()
        wait_log(self.server, "answering as echobot (user %d)" % bot["userId"])
        ca = await self.connect(alice)  # sessions outlive a restart
        await self.enter(ca, cid)
        await self.write(ca, cid, "/echo again")
        self.assertEqual((await ca.expect("NOTIFY_MESSAGE"))["content"], "again")


class ExportTests(unittest.TestCase):
    def test_each_example_exports_only_its_entry(self):
        for name in EXAMPLES:
            out = sh(["nm", "-D", "--defined-only", BUILT[name]])
            names = [line.split()[-1] for line in out.splitlines() if line.strip()]
            self.assertEqual([n for n in names if not n.startswith("_")], ["chatd_plugin_entry"],
                             name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
