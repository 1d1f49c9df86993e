// The main README's Unity MonoBehaviour, compiled by the Rust test with stub UnityEngine types
// and pointed at a cluster with `accounts` and `matchmaking` (FIREFLY_UNITY_EXAMPLE), played as
// Unity would: Start, then Update every frame on one main thread with a synchronization context
// that runs awaits' continuations there. Another player queues too; both are matched.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Examples
    {
        public static void Register(List<KeyValuePair<string, Func<Task>>> tests)
        {
            tests.Add(new KeyValuePair<string, Func<Task>>("readme_unity_example_makes_a_match", UnityExample));
        }

        /// <summary>A main thread: what is posted to it runs between frames, as in Unity.</summary>
        sealed class MainThread : SynchronizationContext
        {
            readonly BlockingCollection<KeyValuePair<SendOrPostCallback, object>> posted = new BlockingCollection<KeyValuePair<SendOrPostCallback, object>>();

            public override void Post(SendOrPostCallback d, object state)
            {
                posted.Add(new KeyValuePair<SendOrPostCallback, object>(d, state));
            }

            public void RunPosted()
            {
                KeyValuePair<SendOrPostCallback, object> next;
                while (posted.TryTake(out next)) next.Key(next.Value);
            }
        }

        static async Task UnityExample()
        {
            var path = Environment.GetEnvironmentVariable("FIREFLY_UNITY_EXAMPLE");
            if (string.IsNullOrEmpty(path))
                throw new InvalidOperationException("FIREFLY_UNITY_EXAMPLE is not set: server/tests/clients.rs compiles the README's example and sets it");
            var assembly = Assembly.LoadFrom(path);
            var type = assembly.GetType("Matchmaker", true);
            var logged = (List<string>)assembly.GetType("UnityEngine.Debug", true).GetField("Logged").GetValue(null);
            const BindingFlags any = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
            var behaviour = Activator.CreateInstance(type);
            var addr = Runner.Addr("matchmaking_tcp");

            var done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            var main = new Thread(() =>
            {
                var context = new MainThread();
                SynchronizationContext.SetSynchronizationContext(context);
                try
                {
                    type.GetMethod("Start", any).Invoke(behaviour, null);
                    var deadline = DateTime.UtcNow.AddSeconds(40);
                    while (DateTime.UtcNow < deadline)
                    {
                        context.RunPosted();
                        type.GetMethod("Update", any).Invoke(behaviour, null);
                        lock (logged)
                            if (logged.Any(l => l.StartsWith("log: match "))) break;
                        Thread.Sleep(10);
                    }
                    type.GetMethod("OnDestroy", any).Invoke(behaviour, null);
                    done.TrySetResult(true);
                }
                catch (Exception e)
                {
                    done.TrySetException(e);
                }
            });
            main.Start();

            // The other player of the duel: a plain client, its own account.
            using (var other = await Net.Tcp(addr))
            {
                var matched = new Next<object>();
                other.OnPush(4801, (v, raw) => matched.Set(v));
                var credentials = new Dictionary<string, object> { { "username", Net.Name("rival").Replace('.', '-') }, { "password", "correct horse" } };
                await other.RequestAsync(201, credentials);
                await other.RequestAsync(202, credentials);
                // Queued once the example is (it logs "queued; ..."), so the two are matched together.
                await Net.Within(Task.Run(async () =>
                {
                    while (true)
                    {
                        lock (logged)
                            if (logged.Any(l => l.StartsWith("log: queued; "))) return true;
                        if (done.Task.IsCompleted) return false;
                        await Task.Delay(10);
                    }
                }), 30, "the example queued");
                await other.RequestAsync(481, new Dictionary<string, object> { { "mode", "duel" }, { "rating", 1250 } });
                var match = await matched.Within(30, "the rival's match push");
                Assert.Equal(2, MsgPack.ToList(MsgPack.Get(match, "players")).Count, "a duel");
                await Net.Within(done.Task, 30, "the example's main thread");
                string line;
                lock (logged) line = logged.FirstOrDefault(l => l.StartsWith("log: match "));
                Assert.True(line != null, "the example logged its match: " + string.Join(" | ", logged));
                Assert.True(line.Contains($"match {MsgPack.Get(match, "id")} in room {MsgPack.Get(match, "room")}"), "the same match: " + line);
                lock (logged)
                    Assert.True(!logged.Any(l => l.StartsWith("warning:") || l.StartsWith("error:")), "no warnings: " + string.Join(" | ", logged));
            }
        }
    }
}
