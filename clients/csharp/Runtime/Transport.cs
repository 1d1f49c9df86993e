using System;
using System.Collections.Generic;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;

namespace Firefly.Client
{
    /// <summary>Opens a connection; it reads nothing until <see cref="Transport.Start"/>.</summary>
    internal delegate Task<Transport> Dial(TimeSpan timeout);

    /// <summary>One open connection: frames go out in order through one writer, bytes come in
    /// through one reader, and the close is reported once.</summary>
    internal abstract class Transport
    {
        readonly object sync = new object();
        List<byte[]> queue = new List<byte[]>();
        bool writing;
        int closed, reported;
        string closeReason;
        Action<byte[], int> onData;
        Action<string> onClose;

        /// <summary>Starts reading: <paramref name="data"/> gets what arrives (any slice of the
        /// stream), <paramref name="close"/> the reason once the connection is gone.</summary>
        public void Start(Action<byte[], int> data, Action<string> close)
        {
            onData = data;
            Volatile.Write(ref onClose, close);
            // A write may have failed already (the frames queued before Start): report it now.
            if (IsClosed) Report();
            else Task.Run(ReadLoop);
        }

        /// <summary>Queues a frame; never blocks.</summary>
        public void Send(byte[] frame)
        {
            lock (sync)
            {
                if (closed != 0) return;
                queue.Add(frame);
                if (writing) return;
                writing = true;
            }
            Task.Run(WriteLoop);
        }

        /// <summary>Closes the connection (its close is still reported, once).</summary>
        public void Close(string reason = "closed by the client")
        {
            Fail(reason);
        }

        async Task WriteLoop()
        {
            while (true)
            {
                List<byte[]> batch;
                lock (sync)
                {
                    if (queue.Count == 0 || closed != 0)
                    {
                        writing = false;
                        return;
                    }
                    batch = queue;
                    queue = new List<byte[]>();
                }
                try
                {
                    await Write(batch).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    Fail($"write failed: {Cause(e)}");
                    lock (sync) writing = false;
                    return;
                }
            }
        }

        async Task ReadLoop()
        {
            var buf = new byte[64 * 1024];
            string reason;
            try
            {
                while (true)
                {
                    var n = await Read(buf).ConfigureAwait(false);
                    if (n <= 0)
                    {
                        reason = n == 0 ? EndReason() : "connection closed";
                        break;
                    }
                    onData(buf, n);
                }
            }
            catch (Exception e)
            {
                reason = $"read failed: {Cause(e)}";
            }
            Fail(reason);
        }

        protected void Fail(string reason)
        {
            if (Interlocked.CompareExchange(ref closeReason, reason, null) != null) return;
            Interlocked.Exchange(ref closed, 1);
            try
            {
                Abort();
            }
            catch (Exception)
            {
                // Already gone.
            }
            Report();
        }

        /// <summary>Tells the close once, as soon as there is someone to tell.</summary>
        void Report()
        {
            var close = Volatile.Read(ref onClose);
            if (close == null || Interlocked.Exchange(ref reported, 1) != 0) return;
            close(Volatile.Read(ref closeReason));
        }

        protected bool IsClosed => Volatile.Read(ref closed) != 0;

        /// <summary>Writes a batch of frames in order.</summary>
        protected abstract Task Write(List<byte[]> frames);
        /// <summary>Reads some bytes into <paramref name="buf"/>; 0 at the end of the stream.</summary>
        protected abstract Task<int> Read(byte[] buf);
        /// <summary>Why the stream ended.</summary>
        protected abstract string EndReason();
        /// <summary>Closes the socket.</summary>
        protected abstract void Abort();

        internal static string Cause(Exception e)
        {
            var msg = e.Message;
            for (var inner = e.InnerException; inner != null; inner = inner.InnerException)
                if (!msg.Contains(inner.Message)) msg += ": " + inner.Message;
            return msg;
        }

        /// <summary>Marks a task's failure as seen (it is given up on).</summary>
        internal static void Observe(Task task)
        {
            task.ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted);
        }

        internal static async Task<T> WithTimeout<T>(Task<T> task, TimeSpan timeout, Action cancel)
        {
            var done = await Task.WhenAny(task, Task.Delay(timeout)).ConfigureAwait(false);
            if (done != task)
            {
                cancel();
                Observe(task);
                throw new TimeoutException($"no connection within {(long)timeout.TotalMilliseconds} ms");
            }
            return await task.ConfigureAwait(false);
        }
    }

    internal sealed class TcpTransport : Transport
    {
        readonly TcpClient client;
        readonly NetworkStream stream;
        byte[] batchBuf = new byte[0];

        TcpTransport(TcpClient client)
        {
            this.client = client;
            stream = client.GetStream();
        }

        public static Dial Dialer(string host, int port)
        {
            return async timeout =>
            {
                var client = new TcpClient { NoDelay = true };
                try
                {
                    var connect = client.ConnectAsync(host, port).ContinueWith(t =>
                    {
                        t.GetAwaiter().GetResult();
                        return true;
                    }, TaskScheduler.Default);
                    await WithTimeout(connect, timeout, client.Close).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    client.Close();
                    throw new ConnectionFailedException($"TCP connection to {host}:{port} failed: {Cause(e)}", e);
                }
                return new TcpTransport(client);
            };
        }

        protected override Task Write(List<byte[]> frames)
        {
            if (frames.Count == 1) return stream.WriteAsync(frames[0], 0, frames[0].Length);
            var total = 0;
            foreach (var f in frames) total += f.Length;
            if (batchBuf.Length < total) batchBuf = new byte[Math.Max(total, 2 * batchBuf.Length)];
            var at = 0;
            foreach (var f in frames)
            {
                Buffer.BlockCopy(f, 0, batchBuf, at, f.Length);
                at += f.Length;
            }
            return stream.WriteAsync(batchBuf, 0, total);
        }

        protected override Task<int> Read(byte[] buf)
        {
            return stream.ReadAsync(buf, 0, buf.Length);
        }

        protected override string EndReason()
        {
            return "tcp connection closed";
        }

        protected override void Abort()
        {
            client.Close();
        }
    }

    internal sealed class WebSocketTransport : Transport
    {
        readonly ClientWebSocket ws;

        WebSocketTransport(ClientWebSocket ws)
        {
            this.ws = ws;
        }

        public static Dial Dialer(string url, string origin, IDictionary<string, string> headers)
        {
            return async timeout =>
            {
                var ws = new ClientWebSocket();
                try
                {
                    var uri = new Uri(url);
                    if (origin != null) ws.Options.SetRequestHeader("Origin", origin);
                    if (headers != null)
                        foreach (var h in headers) ws.Options.SetRequestHeader(h.Key, h.Value);
                    var cancel = new CancellationTokenSource();
                    var connect = ws.ConnectAsync(uri, cancel.Token).ContinueWith(t =>
                    {
                        t.GetAwaiter().GetResult();
                        return true;
                    }, TaskScheduler.Default);
                    await WithTimeout(connect, timeout, cancel.Cancel).ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    ws.Dispose();
                    // Some runtimes (Mono, so Unity) say only "Unable to connect to the remote
                    // server": ask the server again to name the cause (say an HTTP 403).
                    var why = await Probe(url, origin, timeout).ConfigureAwait(false);
                    var cause = why == null ? Cause(e) : $"{why} ({Cause(e)})";
                    throw new ConnectionFailedException($"WebSocket connection to {url} failed: {cause}", e);
                }
                return new WebSocketTransport(ws);
            };
        }

        /// <summary>What a plain upgrade request to <paramref name="url"/> gets: its HTTP status line when
        /// it is not 101, the socket error when it fails, null when it cannot tell (wss, a timeout).</summary>
        static async Task<string> Probe(string url, string origin, TimeSpan timeout)
        {
            Uri uri;
            if (!Uri.TryCreate(url, UriKind.Absolute, out uri) || uri.Scheme != "ws") return null;
            var client = new TcpClient();
            try
            {
                var exchange = Task.Run(async () =>
                {
                    await client.ConnectAsync(uri.Host, uri.Port).ConfigureAwait(false);
                    var request = $"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nUpgrade: websocket\r\n" +
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n" +
                                  (origin == null ? "" : $"Origin: {origin}\r\n") + "\r\n";
                    var bytes = System.Text.Encoding.ASCII.GetBytes(request);
                    var stream = client.GetStream();
                    await stream.WriteAsync(bytes, 0, bytes.Length).ConfigureAwait(false);
                    var buf = new byte[512];
                    var n = await stream.ReadAsync(buf, 0, buf.Length).ConfigureAwait(false);
                    var line = System.Text.Encoding.ASCII.GetString(buf, 0, n).Split('\r', '\n')[0];
                    return line.StartsWith("HTTP/") && !line.Contains(" 101") ? $"HTTP status {line.Substring(line.IndexOf(' ') + 1)}" : null;
                });
                return await WithTimeout(exchange, timeout, client.Close).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                return e is TimeoutException ? null : Cause(e);
            }
            finally
            {
                client.Close();
            }
        }

        protected override async Task Write(List<byte[]> frames)
        {
            foreach (var f in frames)
                await ws.SendAsync(new ArraySegment<byte>(f), WebSocketMessageType.Binary, true, CancellationToken.None)
                    .ConfigureAwait(false);
        }

        protected override async Task<int> Read(byte[] buf)
        {
            while (true)
            {
                var r = await ws.ReceiveAsync(new ArraySegment<byte>(buf), CancellationToken.None).ConfigureAwait(false);
                if (r.MessageType == WebSocketMessageType.Close) return 0;
                if (r.MessageType == WebSocketMessageType.Text) return -1;
                if (r.Count > 0) return r.Count;
            }
        }

        protected override string EndReason()
        {
            var status = ws.CloseStatus;
            return status == null
                ? "websocket closed"
                : $"websocket closed ({(int)status.Value} {ws.CloseStatusDescription})";
        }

        protected override void Abort()
        {
            if (ws.State == WebSocketState.Open || ws.State == WebSocketState.CloseReceived)
            {
                // A close frame if it can go out at once; the socket is dropped either way.
                var closing = ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
                closing.ContinueWith(t => ws.Abort(), TaskScheduler.Default);
                return;
            }
            ws.Abort();
        }
    }
}
