// The C# client's test runner (Mono): every test against the real cluster that
// server/tests/clients.rs starts (FIREFLY_TEST_CLUSTER), one at a time, each with a time limit
// so a hang is a failure, and a closing line `N passed, M failed`.
//
//   mono FireflyClientTests.exe                    # all tests
//   mono FireflyClientTests.exe pipelined websocket  # tests whose name contains a word
//   mono FireflyClientTests.exe --bench <tcp|ws> <host:port> <connections> <depth> <seconds> <payload bytes>
using System;
using System.Collections.Generic;
using System.Json;
using System.Linq;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Runner
    {
        static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
        static JsonValue cluster;

        /// <summary>The cluster the Rust test started; fails loudly without it.</summary>
        public static JsonValue Cluster
        {
            get
            {
                if (cluster != null) return cluster;
                var text = Environment.GetEnvironmentVariable("FIREFLY_TEST_CLUSTER");
                if (string.IsNullOrEmpty(text))
                    throw new InvalidOperationException(
                        "FIREFLY_TEST_CLUSTER is not set: these tests run from `cargo nextest run` (server/tests/clients.rs), which starts the cluster");
                return cluster = JsonValue.Parse(text);
            }
        }

        public static string Addr(string key)
        {
            return (string)Cluster[key];
        }

        static int Main(string[] args)
        {
            if (args.Length > 0 && args[0] == "--bench") return ProcessExit.Now(Bench.Run(args.Skip(1).ToArray()));
            if (args.Length > 0 && args[0].StartsWith("--child-")) return ProcessExit.Now(Children.Run(args));
            var tests = new List<KeyValuePair<string, Func<Task>>>();
            Codec.Register(tests);
            Requests.Register(tests);
            Sessions.Register(tests);
            Edges.Register(tests);
            Examples.Register(tests);
            var chosen = tests.Where(t => args.Length == 0 || args.Any(a => t.Key.Contains(a))).ToList();
            int passed = 0, failed = 0;
            foreach (var t in chosen)
            {
                var started = DateTime.UtcNow;
                string error = null;
                try
                {
                    var run = Task.Run(t.Value);
                    if (!run.Wait(Limit)) error = $"did not finish within {Limit.TotalSeconds} s";
                }
                catch (AggregateException e)
                {
                    error = e.InnerExceptions.Count == 1 ? e.InnerException.ToString() : e.ToString();
                }
                var ms = (long)(DateTime.UtcNow - started).TotalMilliseconds;
                if (error == null)
                {
                    passed++;
                    Console.WriteLine($"ok   {t.Key} ({ms} ms)");
                }
                else
                {
                    failed++;
                    Console.WriteLine($"FAIL {t.Key} ({ms} ms): {error}");
                }
            }
            Console.WriteLine($"{passed} passed, {failed} failed");
            return ProcessExit.Now(failed == 0 && passed > 0 ? 0 : 1);
        }
    }

    /// <summary>Assertions that throw with what differed.</summary>
    static class Assert
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new Exception("expected: " + what);
        }

        public static void Equal<T>(T expected, T actual, string what = "")
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new Exception($"{what}: expected <{expected}>, got <{actual}>");
        }

        public static void Bytes(byte[] expected, byte[] actual, string what = "")
        {
            if (!expected.SequenceEqual(actual))
                throw new Exception($"{what}: expected {Hex(expected)}, got {Hex(actual)}");
        }

        public static string Hex(byte[] b)
        {
            return BitConverter.ToString(b).Replace("-", "").ToLowerInvariant();
        }

        public static async Task<T> Throws<T>(Func<Task> action, string what) where T : Exception
        {
            try
            {
                await action();
            }
            catch (T e)
            {
                return e;
            }
            catch (Exception e)
            {
                throw new Exception($"{what}: expected {typeof(T).Name}, got {e.GetType().Name}: {e.Message}", e);
            }
            throw new Exception($"{what}: expected {typeof(T).Name}, nothing was thrown");
        }
    }
}
