using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;

namespace Firefly.Client
{
    /// <summary>A Firefly client: one connection (and its session) to a gate listener. Requests return
    /// tasks; replies come in request order; pushes and session changes are events. In the default
    /// <see cref="DispatchMode.Queued"/>, call <see cref="DispatchPending"/> every frame: reply tasks
    /// complete and events run there.</summary>
    public sealed partial class FireflyClient : IDisposable
    {
        readonly Dial dial;
        readonly ClientOptions options;
        readonly FrameCodec codec;
        readonly object gate = new object();
        readonly Stopwatch clock = Stopwatch.StartNew();
        Transport conn;
        int generation;
        ConnectionState state = ConnectionState.Connecting;
        bool pushFrames;
        TimeSpan lastSent;
        TimeSpan? droppedAt;
        SessionTicket ticket;
        Timer ticker;
        readonly Queue<Pending> inflight = new Queue<Pending>();
        readonly List<Pending> waiting = new List<Pending>();
        readonly List<Frame> frames = new List<Frame>();
        PushHandler[] pushHandlers = new PushHandler[0];

        FireflyClient(Dial dial, ClientOptions options)
        {
            this.dial = dial;
            this.options = options ?? new ClientOptions();
            codec = new FrameCodec(this.options.Frame ?? new FrameSettings());
        }

        /// <summary>Connects over TCP to <paramref name="host"/>:<paramref name="port"/>, says hello
        /// (push frames) and fetches the session's resume token (or restores <c>options.Restore</c>).
        /// Throws a <see cref="ConnectionFailedException"/> naming the address and the cause.</summary>
        public static Task<FireflyClient> ConnectTcpAsync(string host, int port, ClientOptions options = null)
        {
            return ConnectAsync(TcpTransport.Dialer(host, port), options);
        }

        /// <summary>Connects over WebSocket (<c>ws://</c> or <c>wss://</c>), as <see cref="ConnectTcpAsync"/>.</summary>
        public static Task<FireflyClient> ConnectWebSocketAsync(string url, ClientOptions options = null)
        {
            var o = options ?? new ClientOptions();
            return ConnectAsync(WebSocketTransport.Dialer(url, o.Origin, o.Headers), o);
        }

        static async Task<FireflyClient> ConnectAsync(Dial dial, ClientOptions options)
        {
            var client = new FireflyClient(dial, options);
            var o = client.options;
            var transport = await dial(o.ConnectTimeout).ConfigureAwait(false);
            Task<byte[]> hello, first;
            lock (client.gate)
            {
                client.Open(transport, out hello);
                first = o.Restore != null
                    ? client.SessionLocked(o.Restore, true)
                    : o.Resume ? client.SessionLocked(null, true) : null;
            }
            client.StartTicker();
            client.Flush();
            try
            {
                if (first != null)
                {
                    try
                    {
                        await first.ConfigureAwait(false);
                    }
                    catch (FireflyException e) when (e.Code == "resume_disabled" && o.Restore == null)
                    {
                        // A listener without `resume`: no ticket.
                    }
                    catch (FireflyException e) when (o.Restore != null && (e.Code == "resume_failed" || e.Code == "resume_disabled"))
                    {
                        // The stored session is gone: carry on with a new one.
                        if (o.Resume) await client.RefreshTicket().ConfigureAwait(false);
                    }
                }
                await HelloDone(hello).ConfigureAwait(false);
            }
            catch (Exception)
            {
                client.Close();
                throw;
            }
            return client;
        }

        /// <summary>The current session ticket (null when the listener does not resume sessions).</summary>
        public SessionTicket Session
        {
            get { lock (gate) return ticket; }
        }

        /// <summary>The connection state (<see cref="StateChanged"/> tells each change).</summary>
        public ConnectionState State
        {
            get { lock (gate) return state; }
        }

        /// <summary>Every push: topic id, decoded MessagePack payload (null when empty or not
        /// MessagePack), raw bytes.</summary>
        public event Action<uint, object, byte[]> Pushed;
        /// <summary>The connection dropped; a resumable session is being resumed.</summary>
        public event Action<string> Disconnected;
        /// <summary>The session came back (same session, user and groups); <c>Replayed</c> missed pushes follow.</summary>
        public event Action<SessionTicket> Resumed;
        /// <summary>A new resume token (after each resume and ticket refresh; the first is <see cref="Session"/>
        /// once connected): store <c>ticket.Token</c> to restore the session later.</summary>
        public event Action<SessionTicket> TicketIssued;
        /// <summary>The session is gone (no token, token refused, or no server within the give-up time):
        /// log in again. After <c>resume_failed</c> the client is connected on a new session.</summary>
        public event Action<string> Lost;
        /// <summary>The server kicked this session (e.g. the user logged in elsewhere): the client does
        /// not resume and closes (<see cref="Closed"/> follows). Do not log in again automatically, or
        /// two devices kick each other forever.</summary>
        public event Action<FireflyException> Kicked;
        /// <summary>The node holding a room this session is in is gone (the gate's <c>room_lost</c>
        /// push, also delivered as a push on <see cref="Commands.RoomLost"/>).</summary>
        public event Action<RoomLostInfo> RoomLost;
        /// <summary>The connection state changed.</summary>
        public event Action<ConnectionState> StateChanged;
        /// <summary>The client is closed for good (<c>Close</c>, <c>LogoutAsync</c>, a kick, a lost
        /// session, or an unreadable frame on a connection that cannot resume).</summary>
        public event Action<string> Closed;

        /// <summary>Subscribes to the pushes of one topic; <c>Dispose()</c> the result to unsubscribe.</summary>
        public IDisposable OnPush(uint topic, Action<object, byte[]> handler)
        {
            if (handler == null) throw new ArgumentNullException(nameof(handler));
            var h = new PushHandler(this, topic, handler);
            lock (gate)
            {
                var next = new PushHandler[pushHandlers.Length + 1];
                Array.Copy(pushHandlers, next, pushHandlers.Length);
                next[pushHandlers.Length] = h;
                pushHandlers = next;
            }
            return h;
        }

        /// <summary>Sends <paramref name="command"/> with <paramref name="payload"/> encoded as MessagePack
        /// (null: an empty payload); returns the decoded reply. Throws <see cref="FireflyException"/>
        /// (an error frame), <see cref="RequestTimeoutException"/> or <see cref="ConnectionException"/>.</summary>
        public async Task<object> RequestAsync(uint command, object payload = null, TimeSpan? timeout = null)
        {
            var bytes = payload == null ? new byte[0] : MsgPack.Encode(payload);
            var reply = await Send(command, bytes, timeout, null, false).ConfigureAwait(false);
            return reply.Length == 0 ? null : MsgPack.Decode(reply);
        }

        /// <summary><see cref="RequestAsync(uint, object, TimeSpan?)"/>, the reply converted by
        /// <paramref name="decode"/> (a typed client's <c>FromMsgPack</c>).</summary>
        public async Task<T> RequestAsync<T>(uint command, object payload, Func<object, T> decode, TimeSpan? timeout = null)
        {
            return decode(await RequestAsync(command, payload, timeout).ConfigureAwait(false));
        }

        /// <summary>Sends raw payload bytes; returns the raw reply bytes.</summary>
        public Task<byte[]> RequestRawAsync(uint command, byte[] payload, TimeSpan? timeout = null)
        {
            return Send(command, payload ?? new byte[0], timeout, null, false);
        }

        /// <summary>Takes back the session of <paramref name="token"/> (stored from an earlier run) on this
        /// connection: same session id, user and groups, its kept pushes replayed after
        /// <see cref="Resumed"/>. The session this connection had until now ends. Throws a
        /// <see cref="FireflyException"/> <c>resume_failed</c> and keeps the current session if the
        /// token no longer works.</summary>
        public async Task<SessionTicket> ResumeAsync(string token)
        {
            Task<byte[]> sent;
            lock (gate) sent = SessionLocked(token, false);
            await sent.ConfigureAwait(false);
            return Session;
        }

        /// <summary>Logs out: the gate ends the session at once (its disconnect event fires now, even on a
        /// listener with <c>resume</c>, and its token stops working), and the client closes. Its task
        /// completes without <see cref="DispatchPending"/> (a game may log out as it quits).</summary>
        public async Task LogoutAsync()
        {
            if (State == ConnectionState.Closed) return;
            try
            {
                // Completes without DispatchPending, so a game can log out as it quits.
                await Send(Commands.Logout, new byte[0], null, _ =>
                {
                    ticket = null;
                    Finish("logged out");
                }, true).ConfigureAwait(false);
            }
            catch (Exception e) when (e is FireflyException || e is ConnectionException || e is TimeoutException)
            {
                // A gate too old to know log-out, or the connection is gone: close all the same.
            }
            Close();
        }

        /// <summary>Closes the connection for good, without ending the session: on a listener with
        /// <c>resume</c> it stays parked for the grace window (a restart can restore it). To end it
        /// now, use <see cref="LogoutAsync"/>.</summary>
        public void Close()
        {
            Transport c;
            lock (gate)
            {
                if (state != ConnectionState.Closed) Finish("closed by the client");
                c = conn;
                conn = null;
            }
            Flush();
            c?.Close();
        }

        /// <summary>Same as <see cref="Close"/>.</summary>
        public void Dispose()
        {
            Close();
        }

        sealed class Pending
        {
            public uint Command;
            public byte[] Frame;
            public TimeSpan Timeout;
            public TimeSpan Deadline;
            public TaskCompletionSource<byte[]> Done;
            /// <summary>Run as the reply is read, before the frames after it (even if the request timed out).</summary>
            public Action<byte[]> OnReply;
            /// <summary>The client's own request: completes on the I/O thread, never queued.</summary>
            public bool Direct;
            /// <summary>Timed out: its reply is still expected (replies come in order) and is dropped.</summary>
            public bool Abandoned;
        }

        sealed class PushHandler : IDisposable
        {
            readonly FireflyClient client;
            public readonly uint Topic;
            public readonly Action<object, byte[]> Handler;

            public PushHandler(FireflyClient client, uint topic, Action<object, byte[]> handler)
            {
                this.client = client;
                Topic = topic;
                Handler = handler;
            }

            public void Dispose()
            {
                lock (client.gate)
                    client.pushHandlers = Array.FindAll(client.pushHandlers, h => h != this);
            }
        }
    }
}
