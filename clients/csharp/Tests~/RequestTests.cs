// Requests against the real cluster, over TCP and WebSocket: raw and MessagePack payloads (the
// server's own encodings decoded), typed errors, pushes from another client, 1,000 pipelined
// requests, a payload near the frame limit, timeouts, queued dispatch.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Requests
    {
        static void Add(List<KeyValuePair<string, Func<Task>>> tests, string name, Func<Task> run)
        {
            tests.Add(new KeyValuePair<string, Func<Task>>(name, run));
        }

        public static void Register(List<KeyValuePair<string, Func<Task>>> tests)
        {
            foreach (var ws in new[] { false, true })
            {
                var kind = ws ? "websocket" : "tcp";
                var dial = (Func<ClientOptions, Task<FireflyClient>>)(o => Net.Dialer(ws, Runner.Addr(ws ? "ws_addr" : "tcp"))(o ?? Net.Options()));
                Add(tests, $"request_reply_{kind}", () => RequestReply(dial));
                Add(tests, $"typed_error_{kind}", () => TypedError(dial));
                Add(tests, $"pushes_from_another_client_{kind}", () => Pushes(dial, kind));
                Add(tests, $"pipelined_1000_in_order_{kind}", () => Pipelined(dial));
                Add(tests, $"payload_near_the_frame_limit_{kind}", () => NearLimit(dial));
            }
            Add(tests, "frame_too_large_on_a_small_listener_websocket", TooLarge);
            Add(tests, "timeout_then_the_late_reply_is_dropped", Timeout);
            Add(tests, "queued_dispatch_runs_on_the_calling_thread_in_wire_order", QueuedDispatch);
            Add(tests, "custom_header_values", CustomHeader);
        }

        static async Task RequestReply(Func<ClientOptions, Task<FireflyClient>> dial)
        {
            using (var c = await dial(null))
            {
                Assert.Equal(ConnectionState.Connected, c.State, "state");
                Assert.Equal("asdfe", Encoding.ASCII.GetString(await c.RequestRawAsync(1, Encoding.ASCII.GetBytes("asdfe"))), "raw echo");
                var hello = await c.RequestAsync(101, new Dictionary<string, object> { { "name", "Ada" } });
                Assert.Equal("Hello, Ada!", MsgPack.Get(hello, "greeting") as string, "greeting");
                Assert.Equal(c.Session.Session, MsgPack.ToUInt64(MsgPack.Get(hello, "session")), "session (u64) in the reply");
                Assert.True(MsgPack.ToInt64(MsgPack.Get(hello, "server_time_micros")) > 1600000000000000L, "server time (u64 micros)");
                // i64 both ways: negative and past 32 bits.
                var sum = await c.RequestAsync(103, new Dictionary<string, object> { { "a", -(1L << 40) }, { "b", -5 } });
                Assert.Equal(-(1L << 40) - 5, MsgPack.ToInt64(MsgPack.Get(sum, "sum")), "i64 sum");
                // Option<String> None is nil; a struct with an unused option.
                var me = await c.RequestAsync(116);
                Assert.True(MsgPack.ToMap(me).ContainsKey("user") && MsgPack.Get(me, "user") == null, "user is nil");
                var typed = await c.RequestAsync(103, new Dictionary<string, object> { { "a", 2 }, { "b", 3 } }, v => MsgPack.ToInt64(MsgPack.Get(v, "sum")));
                Assert.Equal(5L, typed, "typed decode");
                Assert.True(c.Session.Token.Length == 48, "a 48-character token");
            }
        }

        static async Task TypedError(Func<ClientOptions, Task<FireflyClient>> dial)
        {
            using (var c = await dial(null))
            {
                var e = await Assert.Throws<FireflyException>(
                    () => c.RequestAsync(103, new Dictionary<string, object> { { "a", 1L << 62 }, { "b", 1L << 62 } }), "overflow");
                Assert.Equal("overflow", e.Code, "code");
                Assert.Equal(103u, e.Command, "command");
                Assert.Equal("lobby", e.Module, "module");
                Assert.True(e.Version.HasValue, "a version");
                Assert.True(!e.Message.StartsWith("overflow") && e.Message.Contains("does not fit"), "message without the code: " + e.Message);
                Assert.True(e.ToString().StartsWith("FireflyException: overflow: "), "ToString: " + e);
                var unknown = await Assert.Throws<FireflyException>(() => c.RequestAsync(9999, new Dictionary<string, object>()), "unknown");
                Assert.Equal("unknown_command", unknown.Code, "unknown command");
                var bad = await Assert.Throws<FireflyException>(() => c.RequestAsync(103, new Dictionary<string, object> { { "a", "x" } }), "bad request");
                Assert.Equal("bad_request", bad.Code, "bad request");
                Assert.Equal(2L, MsgPack.ToInt64(MsgPack.Get(await c.RequestAsync(103, new Dictionary<string, object> { { "a", 1 }, { "b", 1 } }), "sum")), "still usable");
            }
        }

        static async Task Pushes(Func<ClientOptions, Task<FireflyClient>> dial, string kind)
        {
            using (var c = await dial(null))
            using (var other = await dial(null))
            {
                var order = new List<string>();
                c.OnPush(700, (v, raw) => { lock (order) order.Add("push:" + MsgPack.Get(v, "text")); });
                var reply = await c.RequestAsync(104, new Dictionary<string, object> { { "topic", 700 }, { "text", "hi" } });
                lock (order) order.Add("reply:" + MsgPack.Get(reply, "pushed"));
                Assert.Equal("push:hi,reply:True", string.Join(",", order), "the push before the reply");

                // A push on the command id of a request still waiting is not taken for its reply.
                var same = new List<string>();
                c.OnPush(104, (v, raw) => { lock (same) same.Add((string)MsgPack.Get(v, "text")); });
                var replies = await Task.WhenAll(Enumerable.Range(0, 3).Select(i =>
                    c.RequestAsync(104, new Dictionary<string, object> { { "topic", 104 }, { "text", "n" + i } })));
                Assert.True(replies.All(r => MsgPack.Get(r, "pushed") is bool b && b), "three replies");
                Assert.Equal("n0,n1,n2", string.Join(",", same), "three pushes on topic 104");

                // From another client, to a group.
                var group = Net.Name("group-" + kind);
                await c.RequestAsync(108, new Dictionary<string, object> { { "group", group } });
                var got = new Next<(uint, object)>();
                c.Pushed += (topic, v, raw) => { if (topic == 702) got.Set((topic, v)); };
                var sub = c.OnPush(702, (v, raw) => { });
                sub.Dispose();
                await other.RequestAsync(110, new Dictionary<string, object> { { "group", group }, { "topic", 702 }, { "text", "to the group" } });
                var value = (await got.Within(10, "the group push")).Item2;
                Assert.Equal("to the group", MsgPack.Get(value, "text") as string, "group push text");

                // To this session by id (u64 sent back as the server gave it).
                var direct = new Next<object>();
                c.OnPush(703, (v, raw) => direct.Set(v));
                await other.RequestAsync(106, new Dictionary<string, object> { { "session", c.Session.Session }, { "topic", 703 }, { "text", "just you" } });
                Assert.Equal("just you", MsgPack.Get(await direct.Within(10, "the direct push"), "text") as string, "direct push");
            }
        }

        static async Task Pipelined(Func<ClientOptions, Task<FireflyClient>> dial)
        {
            using (var c = await dial(Net.Options(o => o.Dispatch = DispatchMode.Queued)))
            {
                var order = new List<int>();
                var tasks = new List<Task<object>>();
                for (var i = 0; i < 1000; i++)
                {
                    var n = i;
                    var t = c.RequestAsync(103, new Dictionary<string, object> { { "a", i }, { "b", 1 } });
                    t.ContinueWith(_ => order.Add(n), TaskContinuationOptions.ExecuteSynchronously);
                    tasks.Add(t);
                }
                var all = Task.WhenAll(tasks);
                var deadline = DateTime.UtcNow.AddSeconds(30);
                while (!all.IsCompleted && DateTime.UtcNow < deadline)
                {
                    c.DispatchPending();
                    Thread.Sleep(1);
                }
                Assert.True(all.IsCompleted, "1000 replies within 30 s");
                for (var i = 0; i < 1000; i++)
                    Assert.Equal(i + 1L, MsgPack.ToInt64(MsgPack.Get(tasks[i].Result, "sum")), $"reply {i}");
                Assert.Equal(string.Join(",", Enumerable.Range(0, 1000)), string.Join(",", order), "completed in request order");
            }
        }

        static async Task NearLimit(Func<ClientOptions, Task<FireflyClient>> dial)
        {
            // The listener's max_frame is the default 1 MiB.
            using (var c = await dial(null))
            {
                var payload = new byte[(1 << 20) - 8];
                new Random(7).NextBytes(payload);
                var echoed = await c.RequestRawAsync(1, payload, TimeSpan.FromSeconds(30));
                Assert.True(payload.SequenceEqual(echoed), "1 MiB - 8 bytes echoed intact");
                Assert.Equal(3L, MsgPack.ToInt64(MsgPack.Get(await c.RequestAsync(103, new Dictionary<string, object> { { "a", 1 }, { "b", 2 } }), "sum")), "usable after");
            }
        }

        static async Task TooLarge()
        {
            // The `origins:` listener has max_frame 1 KiB: a larger payload is answered
            // frame_too_large, then the connection closes.
            var max = (int)Runner.Cluster["origins_max_frame"];
            var c = await FireflyClient.ConnectWebSocketAsync((string)Runner.Cluster["origins_ws"],
                Net.Options(o => { o.Origin = "http://allowed.example"; o.Resume = false; }));
            try
            {
                Assert.Equal("asdfe", Encoding.ASCII.GetString(await c.RequestRawAsync(1, Encoding.ASCII.GetBytes("asdfe"))), "small echo");
                var near = await c.RequestRawAsync(1, new byte[max]);
                Assert.Equal(max, near.Length, "exactly max_frame");
                var e = await Assert.Throws<FireflyException>(() => c.RequestRawAsync(1, new byte[max + 1]), "over max_frame");
                Assert.Equal("frame_too_large", e.Code, "code");
            }
            finally
            {
                c.Close();
            }
        }

        static async Task Timeout()
        {
            using (var proxy = new Proxy(Runner.Addr("tcp")))
            using (var c = await Net.Tcp(proxy.Addr))
            {
                proxy.Stall();
                var e = await Assert.Throws<RequestTimeoutException>(
                    () => c.RequestAsync(103, new Dictionary<string, object> { { "a", 1 }, { "b", 2 } }, TimeSpan.FromMilliseconds(200)), "stalled");
                Assert.Equal(103u, e.Command, "timed-out command");
                var later = c.RequestAsync(103, new Dictionary<string, object> { { "a", 5 }, { "b", 5 } });
                await Task.Delay(50);
                proxy.Release();
                Assert.Equal(10L, MsgPack.ToInt64(MsgPack.Get(await Net.Within(later, 10, "the next reply"), "sum")), "not the late reply");
            }
        }

        static async Task QueuedDispatch()
        {
            var c = await Net.Tcp(Runner.Addr("tcp"), Net.Options(o => o.Dispatch = DispatchMode.Queued));
            try
            {
                var seen = new List<string>();
                var threads = new HashSet<int>();
                c.OnPush(710, (v, raw) => { seen.Add("push"); threads.Add(Thread.CurrentThread.ManagedThreadId); });
                var reply = c.RequestAsync(104, new Dictionary<string, object> { { "topic", 710 }, { "text", "q" } });
                reply.ContinueWith(_ => { seen.Add("reply"); threads.Add(Thread.CurrentThread.ManagedThreadId); }, TaskContinuationOptions.ExecuteSynchronously);
                await Task.Delay(500);
                Assert.True(!reply.IsCompleted && seen.Count == 0, "nothing runs before DispatchPending");
                var me = Thread.CurrentThread.ManagedThreadId;
                var ran = 0;
                for (var waited = 0; !reply.IsCompleted && waited < 10000; waited += 10)
                {
                    ran += c.DispatchPending();
                    Thread.Sleep(10);
                }
                Assert.True(reply.IsCompleted && ran >= 2, $"ran {ran}");
                Assert.Equal("push,reply", string.Join(",", seen), "wire order");
                Assert.True(threads.Count == 1 && threads.Contains(me), "on the calling thread");
            }
            finally
            {
                c.Close();
            }
        }

        static async Task CustomHeader()
        {
            var h = Runner.Cluster["custom"];
            var settings = new FrameSettings
            {
                Magic = ((System.Json.JsonArray)h["magic"]).Select(b => (byte)(int)b).ToArray(),
                ProtocolVersion = (byte)(int)h["protocol_version"],
                ServerVersion = (uint)(long)h["server_version"],
                ErrorCommand = (uint)(long)h["error_command"],
            };
            using (var c = await Net.Tcp(Runner.Addr("custom_tcp"), Net.Options(o => o.Frame = settings)))
            {
                Assert.Equal(42L, MsgPack.ToInt64(MsgPack.Get(await c.RequestAsync(103, new Dictionary<string, object> { { "a", 20 }, { "b", 22 } }), "sum")), "sum");
                var e = await Assert.Throws<FireflyException>(() => c.RequestAsync(9999), "unknown");
                Assert.Equal("unknown_command", e.Code, "on the custom error command");
            }
        }
    }
}
