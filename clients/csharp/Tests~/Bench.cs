// Load generator on the C# client, the same as clients/typescript/bench/load.mjs: `connections`
// clients, each keeping `depth` echo requests (command 1, raw payload) in flight for `seconds`
// after a 1 s warm-up. Prints one JSON line: requests, rps, p50/p99 in µs, errors.
//
//   mono FireflyClientTests.exe --bench <tcp|ws> <host:port> <connections> <depth> <seconds> <payload bytes>
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Bench
    {
        public static int Run(string[] args)
        {
            if (args.Length != 6)
            {
                Console.Error.WriteLine("usage: --bench <tcp|ws> <host:port> <connections> <depth> <seconds> <payload bytes>");
                return 2;
            }
            return Go(args[0], args[1], int.Parse(args[2]), int.Parse(args[3]), double.Parse(args[4]), int.Parse(args[5]))
                .GetAwaiter().GetResult();
        }

        static async Task<int> Go(string transport, string addr, int connections, int depth, double seconds, int size)
        {
            var options = new ClientOptions { Resume = false, Dispatch = DispatchMode.Immediate };
            var clients = await Task.WhenAll(Enumerable.Range(0, connections).Select(_ =>
                transport == "tcp" ? Net.Tcp(addr, options) : Net.Ws(addr, options)));
            var payload = Enumerable.Repeat((byte)0x5a, size).ToArray();
            var clock = Stopwatch.StartNew();
            var from = TimeSpan.FromSeconds(1);
            var until = from + TimeSpan.FromSeconds(seconds);
            var latencies = new List<double>[connections * depth];
            var errors = 0;

            Func<FireflyClient, int, Task> lane = async (client, at) =>
            {
                var mine = latencies[at] = new List<double>();
                for (var sent = clock.Elapsed; sent < until; sent = clock.Elapsed)
                {
                    try
                    {
                        await client.RequestRawAsync(1, payload).ConfigureAwait(false);
                    }
                    catch (Exception)
                    {
                        if (sent >= from) System.Threading.Interlocked.Increment(ref errors);
                        continue;
                    }
                    var done = clock.Elapsed;
                    if (sent >= from && done < until) mine.Add((done - sent).TotalMilliseconds * 1000);
                }
            };

            await Task.WhenAll(clients.SelectMany((c, i) => Enumerable.Range(0, depth).Select(d => Task.Run(() => lane(c, i * depth + d)))));
            foreach (var c in clients) c.Close();
            var all = latencies.SelectMany(l => l).OrderBy(x => x).ToList();
            Func<double, double> Q = p => all.Count == 0 ? 0 : Math.Round(all[Math.Min(all.Count - 1, (int)(p * all.Count))]);
            Console.WriteLine($"{{\"requests\":{all.Count},\"rps\":{all.Count / seconds:F1},\"p50\":{Q(0.5)},\"p99\":{Q(0.99)},\"errors\":{errors}}}");
            return 0;
        }
    }
}
