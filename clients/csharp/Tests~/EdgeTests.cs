// What a real server does not do on purpose: a fake server sending malformed frames (reported
// and closed, never a hang) and a room_lost push; connections that cannot be opened.
using System;
using System.Collections.Generic;
using System.Net.Sockets;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Edges
    {
        static void Add(List<KeyValuePair<string, Func<Task>>> tests, string name, Func<Task> run)
        {
            tests.Add(new KeyValuePair<string, Func<Task>>(name, run));
        }

        public static void Register(List<KeyValuePair<string, Func<Task>>> tests)
        {
            Add(tests, "malformed_frame_while_connecting_fails_the_connect", MalformedAtConnect);
            Add(tests, "malformed_frame_is_reported_and_closed", Malformed);
            Add(tests, "room_lost_push_is_an_event", RoomLost);
            Add(tests, "connection_errors_name_the_address_and_the_cause", ConnectErrors);
        }

        static async Task MalformedAtConnect()
        {
            using (var server = new FakeServer(async s =>
            {
                await FakeServer.ReadFrame(s);
                await FakeServer.Send(s, new byte[] { 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1 });
                await Task.Delay(10000);
            }))
            {
                var e = await Net.Within(Assert.Throws<ConnectionException>(
                    () => FireflyClient.ConnectTcpAsync("127.0.0.1", server.Port, Net.Options()), "garbage"), 5, "connect");
                Assert.True(e.Message.Contains("unreadable reply") && e.Message.Contains("magic"), "says why: " + e.Message);
            }
        }

        static async Task Malformed()
        {
            foreach (var pair in new[]
            {
                ("length below 4", FakeServer.Frame(103, new byte[0], 2)),
                ("past max_frame", FakeServer.Frame(103, new byte[0], 0x7FFFFFF0)),
                ("other version", new byte[] { 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 103 }),
            })
            {
                var what = pair.Item1;
                var bad = pair.Item2;
                using (var server = new FakeServer(async s =>
                {
                    await FakeServer.Handshake(s);
                    await FakeServer.ReadFrame(s);
                    await FakeServer.Send(s, FakeServer.Frame(103, MsgPack.Encode(new Dictionary<string, object> { { "sum", 3 } })));
                    await FakeServer.ReadFrame(s);
                    await FakeServer.Send(s, bad);
                    await Task.Delay(10000);
                }))
                {
                    var c = await FireflyClient.ConnectTcpAsync("127.0.0.1", server.Port, Net.Options());
                    Assert.Equal(null, c.Session, what + ": no resume on the fake server");
                    var closed = new Next<string>();
                    c.Closed += r => closed.Set(r);
                    var good = await c.RequestAsync(103, new Dictionary<string, object> { { "a", 1 }, { "b", 2 } });
                    Assert.Equal(3L, MsgPack.ToInt64(MsgPack.Get(good, "sum")), what + ": the good reply");
                    var e = await Net.Within(Assert.Throws<ConnectionException>(
                        () => c.RequestAsync(103, new Dictionary<string, object> { { "a", 1 }, { "b", 2 } }, TimeSpan.FromSeconds(30)), what),
                        5, what + ": the request");
                    Assert.True(e.Message.Contains("unreadable reply"), $"{what}: reported: {e.Message}");
                    Assert.True((await closed.Within(5, what + ": closed")).Contains("unreadable reply"), what + ": closed, saying why");
                    Assert.Equal(ConnectionState.Closed, c.State, what + ": state");
                }
            }
        }

        static async Task RoomLost()
        {
            using (var server = new FakeServer(async s =>
            {
                await FakeServer.Handshake(s);
                await FakeServer.ReadFrame(s);
                var body = MsgPack.Encode(new Dictionary<string, object>
                {
                    { "room", "match-7" }, { "node", "logic-2" }, { "code", "room_lost" }, { "message", "node logic-2 is gone" },
                });
                var push = new byte[4 + body.Length];
                push[0] = push[1] = push[2] = 0xFF;
                push[3] = 0x01;
                Buffer.BlockCopy(body, 0, push, 4, body.Length);
                await FakeServer.Send(s, FakeServer.Frame(Commands.PushFrame, push));
                await FakeServer.Send(s, FakeServer.Frame(105, MsgPack.Encode(new Dictionary<string, object> { { "ok", true } })));
                await Task.Delay(10000);
            }))
            using (var c = await FireflyClient.ConnectTcpAsync("127.0.0.1", server.Port, Net.Options()))
            {
                var lost = new Next<RoomLostInfo>();
                var pushed = new Next<uint>();
                c.RoomLost += r => lost.Set(r);
                c.Pushed += (topic, v, raw) => pushed.Set(topic);
                await c.RequestAsync(105);
                var info = await lost.Within(5, "room_lost");
                Assert.Equal("match-7", info.Room, "room");
                Assert.Equal("logic-2", info.Node, "node");
                Assert.Equal("room_lost", info.Code, "code");
                Assert.Equal(Commands.RoomLost, await pushed.Within(5, "the push"), "also a push");
            }
        }

        static async Task ConnectErrors()
        {
            var port = Net.FreePort();
            var e = await Assert.Throws<ConnectionFailedException>(
                () => FireflyClient.ConnectTcpAsync("127.0.0.1", port, Net.Options()), "closed port");
            Assert.True(e.Message.Contains($"127.0.0.1:{port}") && e.Message.ToLowerInvariant().Contains("refused"), "names the address and the cause: " + e.Message);
            var url = (string)Runner.Cluster["origins_ws"];
            var ws = await Assert.Throws<ConnectionFailedException>(
                () => FireflyClient.ConnectWebSocketAsync(url, Net.Options(o => o.Origin = "http://evil.example")), "refused origin");
            Assert.True(ws.Message.Contains(url) && ws.Message.Contains("403"), "names the URL and the status: " + ws.Message);
            using (var ok = await FireflyClient.ConnectWebSocketAsync(url, Net.Options(o => o.Origin = "http://allowed.example")))
                Assert.Equal(ConnectionState.Connected, ok.State, "an allowed origin");
        }
    }
}
