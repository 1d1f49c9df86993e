using System;
using System.Collections.Generic;

namespace Firefly.Client
{
    /// <summary>Where the connection is: <c>Connecting</c> (the first dial), <c>Connected</c>,
    /// <c>Reconnecting</c> (a dropped resumable session being resumed), <c>Closed</c> (for good).</summary>
    public enum ConnectionState
    {
        Connecting,
        Connected,
        Reconnecting,
        Closed,
    }

    /// <summary>Where replies and events are delivered.</summary>
    public enum DispatchMode
    {
        /// <summary>Queued until <see cref="FireflyClient.DispatchPending"/> (call it from the game's
        /// update loop): everything runs on that thread, in the order it came off the wire.</summary>
        Queued,
        /// <summary>Raised on the client's I/O thread as it happens (servers, tools, tests); reply
        /// tasks continue asynchronously, never inline on the I/O thread.</summary>
        Immediate,
    }

    /// <summary>How the client reconnects a dropped resumable session.</summary>
    public sealed class ReconnectOptions
    {
        /// <summary>First delay before reconnecting, doubled after each failed attempt. Default 100 ms.</summary>
        public TimeSpan InitialDelay { get; set; } = TimeSpan.FromMilliseconds(100);
        /// <summary>Largest delay between attempts. Default 2 s.</summary>
        public TimeSpan MaxDelay { get; set; } = TimeSpan.FromSeconds(2);
        /// <summary>Give up (the session is lost) after this long. Default 30 s (the server's default grace).</summary>
        public TimeSpan GiveUpAfter { get; set; } = TimeSpan.FromSeconds(30);
    }

    /// <summary>Client options (all optional).</summary>
    public sealed class ClientOptions
    {
        /// <summary>Default per-request timeout. Default 10 s.</summary>
        public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);
        /// <summary>How long opening the connection may take. Default 10 s.</summary>
        public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);
        /// <summary>Ask for a resume token on connect and resume the session after a drop. Default true
        /// (a listener without <c>resume</c> answers <c>resume_disabled</c>, and the client then does not).</summary>
        public bool Resume { get; set; } = true;
        /// <summary>Reconnection backoff.</summary>
        public ReconnectOptions Reconnect { get; set; } = new ReconnectOptions();
        /// <summary>A resume token kept from an earlier run: the client takes that session back as it
        /// connects. If the token no longer works it carries on with a new session
        /// (<c>Session.Resumed</c> is false).</summary>
        public string Restore { get; set; }
        /// <summary>Send a keep-alive when nothing was sent for this long, so a quiet player is not closed
        /// by the listener's <c>idle_timeout</c>. Default 20 s; zero turns it off.</summary>
        public TimeSpan KeepAlive { get; set; } = TimeSpan.FromSeconds(20);
        /// <summary>The listener's header values.</summary>
        public FrameSettings Frame { get; set; } = new FrameSettings();
        /// <summary>Where replies and events run. Default <see cref="DispatchMode.Queued"/>.</summary>
        public DispatchMode Dispatch { get; set; } = DispatchMode.Queued;
        /// <summary>WebSocket only: the <c>Origin</c> header (listeners with <c>origins:</c> check it).</summary>
        public string Origin { get; set; }
        /// <summary>WebSocket only: more headers for the upgrade request.</summary>
        public IDictionary<string, string> Headers { get; set; }
    }

    /// <summary>A session ticket: the session id and the token that resumes it.</summary>
    public sealed class SessionTicket
    {
        public ulong Session { get; internal set; }
        /// <summary>Store it to restore the session after the game restarts (<see cref="ClientOptions.Restore"/>).</summary>
        public string Token { get; internal set; }
        /// <summary>True when this ticket took an earlier session back.</summary>
        public bool Resumed { get; internal set; }
        /// <summary>Missed pushes replayed right after the resume.</summary>
        public long Replayed { get; internal set; }
        /// <summary>Missed pushes lost to a full buffer.</summary>
        public long Dropped { get; internal set; }

        internal static SessionTicket FromPayload(byte[] payload)
        {
            var map = MsgPack.ToMap(MsgPack.Decode(payload));
            return new SessionTicket
            {
                Session = MsgPack.ToUInt64(MsgPack.Get(map, "session")),
                Token = MsgPack.ToStr(MsgPack.Get(map, "token")),
                Resumed = MsgPack.Get(map, "resumed") is bool r && r,
                Replayed = MsgPack.Get(map, "replayed") is object n ? MsgPack.ToInt64(n) : 0,
                Dropped = MsgPack.Get(map, "dropped") is object d ? MsgPack.ToInt64(d) : 0,
            };
        }

        public override string ToString()
        {
            return $"session {Session} (resumed {Resumed}, replayed {Replayed}, dropped {Dropped})";
        }
    }

    /// <summary>The gate's <c>room_lost</c> push: the node holding a room the session is in is gone.</summary>
    public sealed class RoomLostInfo
    {
        public string Room { get; internal set; }
        public string Node { get; internal set; }
        public string Code { get; internal set; }
        public string Message { get; internal set; }

        internal static RoomLostInfo From(object value)
        {
            return new RoomLostInfo
            {
                Room = MsgPack.Get(value, "room") as string,
                Node = MsgPack.Get(value, "node") as string,
                Code = MsgPack.Get(value, "code") as string ?? "room_lost",
                Message = MsgPack.Get(value, "message") as string ?? "",
            };
        }
    }
}
