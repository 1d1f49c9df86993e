using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.ExceptionServices;
using System.Threading;
using System.Threading.Tasks;

namespace Firefly.Client
{
    // What goes on under the public surface: the frames in and out, the session commands,
    // reconnection, timeouts and keep-alives, and where replies and events run.
    public sealed partial class FireflyClient
    {
        static readonly TimeSpan TickEvery = TimeSpan.FromMilliseconds(20);
        readonly ConcurrentQueue<Action> dispatch = new ConcurrentQueue<Action>();
        /// <summary>Run by the thread that made them once it leaves the lock (guarded by <c>gate</c>).</summary>
        List<Action> effects = new List<Action>();

        /// <summary>Runs the replies and events queued since the last call, on this thread, in the order
        /// they came off the wire; returns how many ran. Call it every frame (Unity <c>Update</c>, Godot
        /// <c>_Process</c>). An exception a handler throws is rethrown after the others ran.</summary>
        public int DispatchPending()
        {
            var n = dispatch.Count;
            var ran = 0;
            Exception first = null;
            Action next;
            while (ran < n && dispatch.TryDequeue(out next))
            {
                ran++;
                try
                {
                    next();
                }
                catch (Exception e)
                {
                    if (first == null) first = e;
                }
            }
            if (first != null) ExceptionDispatchInfo.Capture(first).Throw();
            return ran;
        }

        /// <summary>Delivers <paramref name="a"/> (under the lock): queued for <see cref="DispatchPending"/>,
        /// or run once the lock is left when it is the client's own (<paramref name="direct"/>) or the
        /// client dispatches immediately.</summary>
        void Post(Action a, bool direct = false)
        {
            if (!direct && options.Dispatch == DispatchMode.Queued) dispatch.Enqueue(a);
            else effects.Add(a);
        }

        void Emit<T>(Action<T> handler, T arg)
        {
            if (handler != null) Post(() => handler(arg));
        }

        void Flush()
        {
            List<Action> run;
            lock (gate)
            {
                if (effects.Count == 0) return;
                run = effects;
                effects = new List<Action>();
            }
            foreach (var a in run)
            {
                try
                {
                    a();
                }
                catch (Exception e)
                {
                    // A handler's bug must not break the connection.
                    System.Diagnostics.Trace.TraceError($"Firefly.Client: an event handler threw: {e}");
                }
            }
        }

        TaskCompletionSource<byte[]> NewCompletion(bool direct)
        {
            return direct || options.Dispatch == DispatchMode.Immediate
                ? new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously)
                : new TaskCompletionSource<byte[]>();
        }

        Task<byte[]> Send(uint command, byte[] payload, TimeSpan? timeout, Action<byte[]> onReply, bool direct)
        {
            Task<byte[]> sent;
            lock (gate) sent = SendLocked(command, payload, timeout, onReply, direct);
            return sent;
        }

        Task<byte[]> SendLocked(uint command, byte[] payload, TimeSpan? timeout, Action<byte[]> onReply, bool direct)
        {
            if (state == ConnectionState.Closed)
            {
                var closed = new TaskCompletionSource<byte[]>();
                closed.SetException(new ConnectionException("client is closed"));
                return closed.Task;
            }
            var t = timeout ?? options.Timeout;
            var p = new Pending
            {
                Command = command,
                Frame = codec.Encode(command, payload),
                Timeout = t,
                Deadline = clock.Elapsed + t,
                Done = NewCompletion(direct),
                OnReply = onReply,
                Direct = direct,
            };
            if (state == ConnectionState.Connected && conn != null) Transmit(p);
            else waiting.Add(p);
            return p.Done.Task;
        }

        void Transmit(Pending p)
        {
            inflight.Enqueue(p);
            lastSent = clock.Elapsed;
            conn.Send(p.Frame);
            p.Frame = null;
        }

        /// <summary>Takes a new connection (under the lock): hello goes out first, on every connection.</summary>
        void Open(Transport transport, out Task<byte[]> hello)
        {
            conn = transport;
            var gen = ++generation;
            codec.Reset();
            pushFrames = false;
            SetState(ConnectionState.Connected);
            hello = SendLocked(Commands.Hello, MsgPack.Encode(new Dictionary<string, object> { { "push_frames", true } }), null,
                bytes => pushFrames = bytes.Length > 0 && MsgPack.Get(MsgPack.Decode(bytes), "push_frames") is bool on && on,
                true);
            transport.Start((bytes, n) => OnData(gen, bytes, n), reason => OnClose(gen, reason));
        }

        /// <summary>The session command (under the lock): a ticket, or the resume of <paramref name="token"/>.</summary>
        Task<byte[]> SessionLocked(string token, bool direct)
        {
            var payload = new Dictionary<string, object>();
            if (token != null) payload["resume"] = token;
            return SendLocked(Commands.Session, MsgPack.Encode(payload), null, AdoptTicket, direct);
        }

        static async Task HelloDone(Task<byte[]> hello)
        {
            try
            {
                await hello.ConfigureAwait(false);
            }
            catch (FireflyException)
            {
                // A gate that predates hello: pushes stay plain frames.
            }
        }

        async Task RefreshTicket()
        {
            Task<byte[]> sent;
            lock (gate) sent = SessionLocked(null, true);
            try
            {
                await sent.ConfigureAwait(false);
            }
            catch (FireflyException e) when (e.Code == "resume_disabled")
            {
                lock (gate) ticket = null;
            }
        }

        /// <summary>Takes a ticket the gate just sent (under the lock, as the reply is read).</summary>
        void AdoptTicket(byte[] bytes)
        {
            var t = SessionTicket.FromPayload(bytes);
            ticket = t;
            droppedAt = null;
            if (t.Resumed) Emit(Resumed, t);
            Emit(TicketIssued, t);
        }

        void SetState(ConnectionState next)
        {
            if (state == next) return;
            state = next;
            Emit(StateChanged, next);
        }

        void OnData(int gen, byte[] bytes, int count)
        {
            Transport drop = null;
            string why = null;
            lock (gate)
            {
                if (gen != generation || state == ConnectionState.Closed) return;
                frames.Clear();
                FrameException bad = null;
                try
                {
                    codec.Feed(bytes, count, frames);
                }
                catch (FrameException e)
                {
                    bad = e;
                }
                // The frames before a bad one are answered; then the connection is dropped, and its
                // close decides between resuming and closing.
                foreach (var f in frames)
                {
                    if (state == ConnectionState.Closed || drop != null) break;
                    Handle(f, ref drop);
                }
                if (bad != null && state != ConnectionState.Closed)
                {
                    why = $"unreadable reply: {bad.Message}";
                    FailInflight(new ConnectionException(why));
                    drop = conn;
                }
            }
            Flush();
            drop?.Close(why ?? "closed by the client");
        }

        void Handle(Frame f, ref Transport drop)
        {
            var head = inflight.Count > 0 ? inflight.Peek() : null;
            if (pushFrames && f.Command == Commands.PushFrame && f.Payload.Length >= 4)
            {
                // A push frame: never a reply, whatever its topic.
                var body = new byte[f.Payload.Length - 4];
                Buffer.BlockCopy(f.Payload, 4, body, 0, body.Length);
                EmitPush(FrameCodec.Get(f.Payload, 0), body);
            }
            else if (f.Command == codec.ErrorCommand)
            {
                var error = FireflyException.FromPayload(f.Payload);
                if (error.Code == "kicked" && (head == null || head.Command != error.Command))
                {
                    // The session is over on the server: no resume (it would only be refused).
                    ticket = null;
                    Emit(Kicked, error);
                    Finish($"kicked: {error.Message}");
                    drop = conn;
                    conn = null;
                    return;
                }
                if (head != null) Settle(head, null, error);
            }
            else if (head != null && f.Command == head.Command)
            {
                Settle(head, f.Payload, null);
            }
            else
            {
                EmitPush(f.Command, f.Payload);
            }
        }

        void EmitPush(uint topic, byte[] payload)
        {
            object value = null;
            try
            {
                if (payload.Length > 0) value = MsgPack.Decode(payload);
            }
            catch (MsgPackException)
            {
                // Not MessagePack: the raw bytes are there.
            }
            var all = Pushed;
            if (all != null) Post(() => all(topic, value, payload));
            foreach (var h in pushHandlers)
            {
                if (h.Topic != topic) continue;
                var handler = h.Handler;
                Post(() => handler(value, payload));
            }
            if (topic == Commands.RoomLost && RoomLost != null)
            {
                try
                {
                    Emit(RoomLost, RoomLostInfo.From(value));
                }
                catch (MsgPackException)
                {
                    // An unreadable room_lost is still a push.
                }
            }
        }

        void Settle(Pending head, byte[] payload, Exception error)
        {
            inflight.Dequeue();
            if (error == null && head.OnReply != null) head.OnReply(payload);
            if (head.Abandoned) return;
            var done = head.Done;
            if (error != null) Post(() => done.TrySetException(error), head.Direct);
            else Post(() => done.TrySetResult(payload), head.Direct);
        }

        void Reject(Pending p, Exception error)
        {
            var done = p.Done;
            Post(() => done.TrySetException(error), p.Direct);
        }

        void FailInflight(Exception error)
        {
            while (inflight.Count > 0)
            {
                var p = inflight.Dequeue();
                if (!p.Abandoned) Reject(p, error);
            }
        }

        /// <summary>Closed for good (under the lock).</summary>
        void Finish(string reason)
        {
            if (state == ConnectionState.Closed) return;
            SetState(ConnectionState.Closed);
            ticker?.Dispose();
            ticker = null;
            var error = new ConnectionException(reason);
            FailInflight(error);
            foreach (var p in waiting) Reject(p, error);
            waiting.Clear();
            Emit(Closed, reason);
        }

        void OnClose(int gen, string reason)
        {
            string token = null;
            lock (gate)
            {
                if (gen != generation || state == ConnectionState.Closed) return;
                conn = null;
                pushFrames = false;
                codec.Reset();
                FailInflight(new ConnectionException($"connection lost ({reason}); the request may have run"));
                if (ticket == null)
                {
                    Emit(Lost, $"connection lost ({reason}) and the session is not resumable");
                    Finish(reason);
                }
                else
                {
                    SetState(ConnectionState.Reconnecting);
                    if (droppedAt == null) droppedAt = clock.Elapsed;
                    Emit(Disconnected, reason);
                    token = ticket.Token;
                }
            }
            Flush();
            if (token != null) Task.Run(() => Reconnect(token));
        }

        async Task Reconnect(string token)
        {
            var backoff = options.Reconnect ?? new ReconnectOptions();
            TimeSpan giveUp;
            lock (gate) giveUp = (droppedAt ?? clock.Elapsed) + backoff.GiveUpAfter;
            var delay = backoff.InitialDelay;
            while (true)
            {
                await Task.Delay(delay).ConfigureAwait(false);
                lock (gate)
                {
                    if (state != ConnectionState.Reconnecting) return;
                    if (clock.Elapsed > giveUp)
                    {
                        ticket = null;
                        Emit(Lost, $"no connection within {(long)backoff.GiveUpAfter.TotalMilliseconds} ms");
                        Finish("could not reconnect");
                    }
                }
                if (State == ConnectionState.Closed)
                {
                    Flush();
                    return;
                }
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, backoff.MaxDelay.Ticks));
                Transport transport;
                try
                {
                    transport = await dial(options.ConnectTimeout).ConfigureAwait(false);
                }
                catch (ConnectionFailedException)
                {
                    continue;
                }
                Task<byte[]> hello, resumed;
                lock (gate)
                {
                    if (state != ConnectionState.Reconnecting)
                    {
                        transport.Close();
                        return;
                    }
                    // Hello and the resume go out first, then what was queued meanwhile. The resume's
                    // answer is handled as it is read, so `Resumed` comes before the replayed pushes.
                    Open(transport, out hello);
                    resumed = SessionLocked(token, true);
                    foreach (var p in waiting) Transmit(p);
                    waiting.Clear();
                }
                Flush();
                Exception error = null;
                try
                {
                    await resumed.ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    error = e;
                }
                try
                {
                    await HelloDone(hello).ConfigureAwait(false);
                }
                catch (ConnectionException)
                {
                    // The new connection dropped too: its close starts over.
                }
                if (error is FireflyException refused)
                {
                    // Connected, but on a new session.
                    lock (gate)
                    {
                        ticket = null;
                        droppedAt = null;
                        Emit(Lost, $"{refused.Code}: {refused.Message}");
                    }
                    Flush();
                    if (options.Resume)
                    {
                        try
                        {
                            await RefreshTicket().ConfigureAwait(false);
                        }
                        catch (Exception)
                        {
                            // The connection dropped again: it is not resumable, its close says lost.
                        }
                    }
                }
                return;
            }
        }

        void StartTicker()
        {
            lock (gate)
            {
                if (state != ConnectionState.Closed && ticker == null)
                    ticker = new Timer(_ => Tick(), null, TickEvery, TickEvery);
            }
        }

        /// <summary>Times requests out and sends keep-alives.</summary>
        void Tick()
        {
            try
            {
                TickLocked();
            }
            catch (Exception e)
            {
                // A timer thread must never throw (it would end the process).
                System.Diagnostics.Trace.TraceError($"Firefly.Client: {e}");
            }
            Flush();
        }

        void TickLocked()
        {
            lock (gate)
            {
                if (state == ConnectionState.Closed) return;
                var now = clock.Elapsed;
                foreach (var p in inflight)
                {
                    if (p.Abandoned || now < p.Deadline) continue;
                    p.Abandoned = true;
                    Reject(p, new RequestTimeoutException(p.Command, p.Timeout));
                }
                for (var i = waiting.Count - 1; i >= 0; i--)
                {
                    if (now < waiting[i].Deadline) continue;
                    var p = waiting[i];
                    waiting.RemoveAt(i);
                    Reject(p, new RequestTimeoutException(p.Command, p.Timeout));
                }
                var every = TimeSpan.FromTicks(options.KeepAlive.Ticks / 2);
                if (options.KeepAlive > TimeSpan.Zero && state == ConnectionState.Connected && now - lastSent >= every)
                {
                    var sent = SendLocked(Commands.KeepAlive, new byte[0], null, null, true);
                    Transport.Observe(sent);
                }
            }
        }
    }
}
