// Sessions against the real cluster: a dropped connection resumed with the missed pushes
// replayed, restore in a new process from a stored token, kicks, log-out, keep-alives, a
// session that cannot come back.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Sessions
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
                var key = ws ? "ws_addr" : "tcp";
                Add(tests, $"dropped_connection_resumed_with_missed_pushes_{kind}", () => Resume(ws, key));
                Add(tests, $"kick_ends_the_session_{kind}", () => Kick(ws, key));
            }
            Add(tests, "restore_in_a_new_process_from_a_stored_token", Restore);
            Add(tests, "resume_with_a_bad_token_keeps_the_session", BadToken);
            Add(tests, "logout_ends_a_resumable_session_at_once", Logout);
            Add(tests, "keep_alives_keep_a_quiet_client", KeepAlive);
            Add(tests, "session_that_cannot_come_back_is_lost", Lost);
        }

        static Dictionary<string, object> Map(params object[] kv)
        {
            var m = new Dictionary<string, object>();
            for (var i = 0; i < kv.Length; i += 2) m[(string)kv[i]] = kv[i + 1];
            return m;
        }

        static async Task Resume(bool ws, string key)
        {
            using (var proxy = new Proxy(Runner.Addr(key)))
            using (var roamer = await Net.Dialer(ws, proxy.Addr)(Net.Options(o => o.Reconnect.InitialDelay = TimeSpan.FromMilliseconds(50))))
            using (var talker = await Net.Dialer(ws, Runner.Addr(key))(Net.Options()))
            {
                var user = Net.Name("roamer");
                var group = Net.Name("resume");
                await roamer.RequestAsync(112, Map("user", user));
                await roamer.RequestAsync(108, Map("group", group));
                var texts = new List<string>();
                var first = new Next<bool>();
                roamer.OnPush(800, (v, raw) =>
                {
                    lock (texts) texts.Add((string)MsgPack.Get(v, "text"));
                    first.Set(true);
                });
                await talker.RequestAsync(110, Map("group", group, "topic", 800, "text", "before"));
                await first.Within(10, "the first push");
                var session = roamer.Session.Session;

                var disconnected = new Next<string>();
                roamer.Disconnected += r => disconnected.Set(r);
                proxy.Cut();
                await disconnected.Within(10, "disconnected");
                Assert.Equal(ConnectionState.Reconnecting, roamer.State, "reconnecting");
                var queued = roamer.RequestAsync(116);
                await talker.RequestAsync(110, Map("group", group, "topic", 800, "text", "while away"));
                var resumed = new Next<SessionTicket>();
                roamer.Resumed += t =>
                {
                    lock (texts) texts.Add("<resumed>");
                    resumed.Set(t);
                };
                proxy.Accept();
                var ticket = await resumed.Within(15, "resumed");
                Assert.Equal(session, ticket.Session, "same session");
                Assert.True(ticket.Resumed && ticket.Dropped == 0 && ticket.Replayed >= 1, "resumed: " + ticket);
                var me = await Net.Within(queued, 10, "the request made while away");
                Assert.Equal(session, MsgPack.ToUInt64(MsgPack.Get(me, "session")), "queued request ran on the session");
                Assert.Equal(user, MsgPack.Get(me, "user") as string, "same user");
                await talker.RequestAsync(110, Map("group", group, "topic", 800, "text", "after"));
                await roamer.RequestAsync(116);
                lock (texts) Assert.Equal("before,<resumed>,while away,after", string.Join(",", texts), "resumed, then the missed push");
                Assert.Equal(ConnectionState.Connected, roamer.State, "connected");
            }
        }

        static async Task Kick(bool ws, string key)
        {
            var user = Net.Name("kicked");
            var dial = Net.Dialer(ws, Runner.Addr(key));
            var first = await dial(Net.Options());
            await first.RequestAsync(112, Map("user", user));
            var seen = new Recorder(first);
            var kicked = new Next<FireflyException>();
            var closed = new Next<string>();
            first.Kicked += e => kicked.Set(e);
            first.Closed += r => closed.Set(r);
            using (var second = await dial(Net.Options()))
            {
                await second.RequestAsync(112, Map("user", user));
                var e = await kicked.Within(10, "kicked");
                Assert.Equal("kicked", e.Code, "kick code");
                Assert.True((await closed.Within(10, "closed")).Contains("kicked"), "closed reason");
                Assert.Equal(ConnectionState.Closed, first.State, "closed");
                Assert.Equal("kicked,state:Closed,closed", seen.Joined, "no resume after a kick");
                await Assert.Throws<ConnectionException>(() => first.RequestAsync(116), "request after the kick");
                Assert.Equal(user, MsgPack.Get(await second.RequestAsync(116), "user") as string, "the second device");
                await Task.Delay(300);
                Assert.Equal("kicked,state:Closed,closed", seen.Joined, "nothing more");
            }
        }

        static string Self => System.Reflection.Assembly.GetEntryAssembly().Location;

        static string RunChild(string mode, string file, string addr)
        {
            var mono = Environment.GetEnvironmentVariable("MONO") ?? "mono";
            var info = new ProcessStartInfo(mono, $"\"{Self}\" {mode} \"{file}\" {addr}")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
            };
            using (var p = Process.Start(info))
            {
                var output = p.StandardOutput.ReadToEnd();
                if (!p.WaitForExit(30000)) throw new Exception($"{mode} did not exit");
                if (p.ExitCode != 0) throw new Exception($"{mode} exited {p.ExitCode}: {output}");
                return output.Trim();
            }
        }

        static async Task Restore()
        {
            var file = Path.GetTempFileName();
            try
            {
                var addr = Runner.Addr("tcp");
                // One game process logs in, stores its token and exits (its connection drops, the
                // session is parked); a new process restores it from the file.
                var first = RunChild("--child-login", file, addr);
                var second = RunChild("--child-restore", file, addr);
                var a = first.Split(' ');
                var b = second.Split(' ');
                Assert.Equal(a[0], b[0], "same session id");
                Assert.Equal("resumed=True", b[1], "resumed");
                Assert.Equal(a[1], b[2], "same user");
                // The token the restore used is spent: a third process starts a new session.
                var third = RunChild("--child-restore-spent", file, addr);
                Assert.True(third.StartsWith("new "), "a used token gives a new session: " + third);
                await Task.CompletedTask;
            }
            finally
            {
                File.Delete(file);
            }
        }

        static async Task BadToken()
        {
            using (var c = await Net.Tcp(Runner.Addr("tcp")))
            {
                var before = c.Session;
                var e = await Assert.Throws<FireflyException>(() => c.ResumeAsync(new string('0', 48)), "a bad token");
                Assert.Equal("resume_failed", e.Code, "code");
                Assert.True(!e.Message.StartsWith("resume_failed"), "the message without the code: " + e.Message);
                Assert.Equal(before.Session, c.Session.Session, "the session kept");
                Assert.Equal(before.Session, MsgPack.ToUInt64(MsgPack.Get(await c.RequestAsync(116), "session")), "still served");
            }
        }

        static async Task Logout()
        {
            using (var watcher = await Net.Tcp(Runner.Addr("plain_tcp")))
            {
                await watcher.RequestAsync(108, Map("group", "watchers"));
                var player = await Net.Tcp(Runner.Addr("tcp"));
                var session = player.Session.Session;
                var left = new Next<bool>();
                watcher.OnPush(199, (v, raw) => { if (MsgPack.ToUInt64(MsgPack.Get(v, "left")) == session) left.Set(true); });
                var closed = new Next<string>();
                player.Closed += r => closed.Set(r);
                await player.LogoutAsync();
                Assert.Equal("logged out", await closed.Within(5, "closed"), "closed reason");
                Assert.Equal(ConnectionState.Closed, player.State, "closed");
                // The disconnect event fired now, not after the listener's 60 s grace.
                await left.Within(10, "the watchers' push");
                // Queued dispatch: log-out completes without DispatchPending (a game quitting).
                var quitting = await Net.Tcp(Runner.Addr("tcp"), Net.Options(o => o.Dispatch = DispatchMode.Queued));
                await Net.Within(quitting.LogoutAsync(), 5, "log-out without DispatchPending");
                Assert.Equal(ConnectionState.Closed, quitting.State, "closed after log-out");
            }
        }

        static async Task KeepAlive()
        {
            var idle = Runner.Addr("idle_tcp");
            var timeout = (int)Runner.Cluster["idle_timeout_ms"];
            using (var quiet = await Net.Tcp(idle, Net.Options(o => o.KeepAlive = TimeSpan.FromMilliseconds(300))))
            {
                var seen = new Recorder(quiet);
                var session = MsgPack.Get(await quiet.RequestAsync(116), "session");
                for (var i = 0; i < 2; i++)
                {
                    var silent = await Net.Tcp(idle, Net.Options(o => o.KeepAlive = TimeSpan.Zero));
                    var closed = new Next<string>();
                    silent.Closed += r => closed.Set(r);
                    await closed.Within(10 * timeout / 1000.0, "the silent client closed by idle_timeout");
                }
                Assert.Equal("", seen.Joined, "the quiet client saw nothing");
                Assert.Equal(ConnectionState.Connected, quiet.State, "still connected");
                Assert.Equal(session, MsgPack.Get(await quiet.RequestAsync(116), "session"), "same session");
            }
        }

        static async Task Lost()
        {
            using (var proxy = new Proxy(Runner.Addr("tcp")))
            {
                var c = await Net.Tcp(proxy.Addr, Net.Options(o => o.Reconnect = new ReconnectOptions
                {
                    InitialDelay = TimeSpan.FromMilliseconds(20),
                    MaxDelay = TimeSpan.FromMilliseconds(50),
                    GiveUpAfter = TimeSpan.FromMilliseconds(300),
                }));
                var lost = new Next<string>();
                var closed = new Next<string>();
                c.Lost += r => lost.Set(r);
                c.Closed += r => closed.Set(r);
                proxy.Stall();
                var pending = c.RequestAsync(116, null, TimeSpan.FromSeconds(5));
                await Task.Delay(50);
                proxy.Cut();
                await Assert.Throws<ConnectionException>(() => pending, "the request in flight");
                Assert.True((await lost.Within(10, "lost")).Contains("no connection"), "lost reason");
                await closed.Within(10, "closed");
                await Assert.Throws<ConnectionException>(() => c.RequestAsync(116), "after");
            }
        }
    }

    /// <summary>The game processes of the restore test.</summary>
    static class Children
    {
        public static int Run(string[] args)
        {
            var (mode, file, addr) = (args[0], args[1], args[2]);
            return Go(mode, file, addr).GetAwaiter().GetResult();
        }

        static async Task<int> Go(string mode, string file, string addr)
        {
            if (mode == "--child-login")
            {
                var c = await Net.Tcp(addr);
                var user = Net.Name("restored");
                await c.RequestAsync(112, new Dictionary<string, object> { { "user", user } });
                File.WriteAllText(file, c.Session.Token);
                Console.WriteLine($"{c.Session.Session} {user}");
                // Exits without closing: the process is gone, as a game that quits or crashes.
                ProcessExit.Now(0);
            }
            var token = File.ReadAllText(file).Trim();
            using (var c = await Net.Tcp(addr, Net.Options(o => o.Restore = token)))
            {
                var me = await c.RequestAsync(116);
                if (mode == "--child-restore-spent")
                {
                    Console.WriteLine(c.Session.Resumed ? "resumed" : $"new {c.Session.Session}");
                    return 0;
                }
                Console.WriteLine($"{c.Session.Session} resumed={c.Session.Resumed} {MsgPack.Get(me, "user")}");
                if (MsgPack.ToUInt64(MsgPack.Get(me, "session")) != c.Session.Session) return 2;
                if (c.Session.Token == token) return 3;
            }
            return 0;
        }
    }
}
