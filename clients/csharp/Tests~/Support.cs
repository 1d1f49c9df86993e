// What the tests share: connecting to the cluster, waiting for an event, a TCP proxy that drops
// connections for real and stalls replies, and a fake server that answers what a test says.
using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Net
    {
        static int count;

        /// <summary>A name no other test or run uses.</summary>
        public static string Name(string what)
        {
            return $"cs-{what}-{System.Diagnostics.Process.GetCurrentProcess().Id}-{Interlocked.Increment(ref count)}";
        }

        public static ClientOptions Options(Action<ClientOptions> change = null)
        {
            var o = new ClientOptions { Dispatch = DispatchMode.Immediate };
            change?.Invoke(o);
            return o;
        }

        public static (string, int) Split(string addr)
        {
            var at = addr.LastIndexOf(':');
            return (addr.Substring(0, at), int.Parse(addr.Substring(at + 1)));
        }

        /// <summary>Connects to a cluster address (a key of its description) or host:port.</summary>
        public static Task<FireflyClient> Tcp(string addr, ClientOptions options = null)
        {
            var (host, port) = Split(addr);
            return FireflyClient.ConnectTcpAsync(host, port, options ?? Options());
        }

        public static Task<FireflyClient> Ws(string addr, ClientOptions options = null)
        {
            return FireflyClient.ConnectWebSocketAsync($"ws://{addr}/", options ?? Options());
        }

        public static Func<ClientOptions, Task<FireflyClient>> Dialer(bool ws, string addr)
        {
            return o => ws ? Ws(addr, o) : Tcp(addr, o);
        }

        /// <summary>Waits for <paramref name="task"/> at most <paramref name="seconds"/>.</summary>
        public static async Task<T> Within<T>(Task<T> task, double seconds, string what)
        {
            if (await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(seconds))) != task)
                throw new TimeoutException($"{what}: nothing within {seconds} s");
            return await task;
        }

        public static async Task Within(Task task, double seconds, string what)
        {
            if (await Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(seconds))) != task)
                throw new TimeoutException($"{what}: nothing within {seconds} s");
            await task;
        }

        public static int FreePort()
        {
            var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            var port = ((IPEndPoint)l.LocalEndpoint).Port;
            l.Stop();
            return port;
        }
    }

    /// <summary>Records a client's session events in order (Immediate dispatch).</summary>
    sealed class Recorder
    {
        public readonly List<string> Seen = new List<string>();

        public Recorder(FireflyClient c)
        {
            c.Disconnected += r => Add("disconnected");
            c.Resumed += t => Add("resumed");
            c.Lost += r => Add("lost");
            c.Kicked += e => Add("kicked");
            c.Closed += r => Add("closed");
            c.TicketIssued += t => Add("ticket");
            c.StateChanged += s => Add("state:" + s);
        }

        void Add(string e)
        {
            lock (Seen) Seen.Add(e);
        }

        public string Joined
        {
            get { lock (Seen) return string.Join(",", Seen); }
        }
    }

    /// <summary>The next value an event hands over.</summary>
    sealed class Next<T>
    {
        readonly TaskCompletionSource<T> got = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        public void Set(T value)
        {
            got.TrySetResult(value);
        }

        public Task<T> Within(double seconds, string what)
        {
            return Net.Within(got.Task, seconds, what);
        }
    }

    /// <summary>A TCP proxy on 127.0.0.1 to a target: <c>Cut()</c> drops every connection and refuses
    /// new ones until <c>Accept()</c>; <c>Stall()</c> holds back what the server sends until <c>Release()</c>.</summary>
    sealed class Proxy : IDisposable
    {
        readonly string host;
        readonly int targetPort;
        readonly TcpListener listener = new TcpListener(IPAddress.Loopback, 0);
        readonly List<TcpClient> open = new List<TcpClient>();
        readonly List<(NetworkStream, byte[])> held = new List<(NetworkStream, byte[])>();
        volatile bool refusing, stalled, stopped;

        public Proxy(string target)
        {
            (host, targetPort) = Net.Split(target);
            listener.Start();
            Port = ((IPEndPoint)listener.LocalEndpoint).Port;
            Task.Run(AcceptLoop);
        }

        public int Port { get; }
        public string Addr => $"127.0.0.1:{Port}";

        async Task AcceptLoop()
        {
            while (!stopped)
            {
                TcpClient down;
                try
                {
                    down = await listener.AcceptTcpClientAsync();
                }
                catch (Exception)
                {
                    return;
                }
                if (refusing)
                {
                    down.Client.LingerState = new LingerOption(true, 0);
                    down.Close();
                    continue;
                }
                var up = new TcpClient { NoDelay = true };
                try
                {
                    await up.ConnectAsync(host, targetPort);
                }
                catch (Exception)
                {
                    down.Close();
                    continue;
                }
                down.NoDelay = true;
                lock (open)
                {
                    open.Add(down);
                    open.Add(up);
                }
                Pipe(down, up, false);
                Pipe(up, down, true);
            }
        }

        async Task Pipe(TcpClient from, TcpClient to, bool fromServer)
        {
            var buf = new byte[65536];
            try
            {
                var src = from.GetStream();
                var dst = to.GetStream();
                while (true)
                {
                    var n = await src.ReadAsync(buf, 0, buf.Length);
                    if (n <= 0) break;
                    var copy = new byte[n];
                    Buffer.BlockCopy(buf, 0, copy, 0, n);
                    lock (held)
                    {
                        if (fromServer && stalled)
                        {
                            held.Add((dst, copy));
                            continue;
                        }
                    }
                    await dst.WriteAsync(copy, 0, n);
                }
            }
            catch (Exception)
            {
                // Cut.
            }
            Drop(from);
            Drop(to);
        }

        void Drop(TcpClient c)
        {
            try
            {
                c.Client.LingerState = new LingerOption(true, 0);
                c.Close();
            }
            catch (Exception)
            {
                // Already closed.
            }
            lock (open) open.Remove(c);
        }

        public void Cut()
        {
            refusing = true;
            List<TcpClient> all;
            lock (open) all = new List<TcpClient>(open);
            foreach (var c in all) Drop(c);
        }

        public void Accept()
        {
            refusing = false;
        }

        public void Stall()
        {
            lock (held) stalled = true;
        }

        public void Release()
        {
            lock (held)
            {
                stalled = false;
                foreach (var pair in held)
                {
                    try
                    {
                        pair.Item1.Write(pair.Item2, 0, pair.Item2.Length);
                    }
                    catch (Exception)
                    {
                        // Cut meanwhile.
                    }
                }
                held.Clear();
            }
        }

        public void Dispose()
        {
            stopped = true;
            Cut();
            listener.Stop();
        }
    }

    /// <summary>A server on 127.0.0.1 that hands each connection to <c>serve</c>.</summary>
    sealed class FakeServer : IDisposable
    {
        readonly TcpListener listener = new TcpListener(IPAddress.Loopback, 0);

        public FakeServer(Func<NetworkStream, Task> serve)
        {
            listener.Start();
            Port = ((IPEndPoint)listener.LocalEndpoint).Port;
            Task.Run(async () =>
            {
                while (true)
                {
                    TcpClient c;
                    try
                    {
                        c = await listener.AcceptTcpClientAsync();
                    }
                    catch (Exception)
                    {
                        return;
                    }
                    Task.Run(async () =>
                    {
                        using (c)
                        {
                            try
                            {
                                await serve(c.GetStream());
                            }
                            catch (Exception)
                            {
                                // The client went away.
                            }
                        }
                    });
                }
            });
        }

        public int Port { get; }

        /// <summary>Reads one frame (command, payload) as the client sends it.</summary>
        public static async Task<(uint, byte[])> ReadFrame(NetworkStream s)
        {
            var head = await Exactly(s, 17);
            var length = (uint)(head[9] << 24 | head[10] << 16 | head[11] << 8 | head[12]);
            var command = (uint)head[13] << 24 | (uint)head[14] << 16 | (uint)head[15] << 8 | head[16];
            var payload = await Exactly(s, (int)length - 4);
            return (command, payload);
        }

        static async Task<byte[]> Exactly(NetworkStream s, int n)
        {
            var b = new byte[n];
            for (var at = 0; at < n;)
            {
                var got = await s.ReadAsync(b, at, n - at);
                if (got <= 0) throw new System.IO.EndOfStreamException();
                at += got;
            }
            return b;
        }

        /// <summary>A frame with the default header values.</summary>
        public static byte[] Frame(uint command, byte[] payload, uint? length = null)
        {
            var f = new byte[17 + payload.Length];
            var len = length ?? (uint)payload.Length + 4;
            f[9] = (byte)(len >> 24); f[10] = (byte)(len >> 16); f[11] = (byte)(len >> 8); f[12] = (byte)len;
            f[13] = (byte)(command >> 24); f[14] = (byte)(command >> 16); f[15] = (byte)(command >> 8); f[16] = (byte)command;
            Buffer.BlockCopy(payload, 0, f, 17, payload.Length);
            return f;
        }

        public static Task Send(NetworkStream s, byte[] bytes)
        {
            return s.WriteAsync(bytes, 0, bytes.Length);
        }

        /// <summary>Answers hello (push frames on) and the session command (<c>resume_disabled</c>), as a
        /// gate without resume does.</summary>
        public static async Task Handshake(NetworkStream s)
        {
            for (var i = 0; i < 2; i++)
            {
                var command = (await ReadFrame(s)).Item1;
                if (command == Commands.Hello)
                    await Send(s, Frame(command, MsgPack.Encode(new Dictionary<string, object> { { "push_frames", true } })));
                else
                    await Send(s, Frame(Commands.DefaultError, MsgPack.Encode(new Dictionary<string, object>
                    {
                        { "command", command }, { "code", "resume_disabled" }, { "message", "no resume here" },
                    })));
            }
        }

        public void Dispose()
        {
            listener.Stop();
        }
    }
}
