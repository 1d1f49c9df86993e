// Firefly framing: a 17-byte big-endian header, then the payload.
//
// | offset | size | field                               |
// |--------|------|-------------------------------------|
// | 0      | 4    | magic bytes (default 00 00 00 00)   |
// | 4      | 1    | protocol version (default 0)        |
// | 5      | 4    | server version, u32 (default 0)     |
// | 9      | 4    | length = payload length + 4         |
// | 13     | 4    | command id (or a push's topic id)   |
using System;
using System.Collections.Generic;
using System.IO;

namespace Firefly.Client
{
    /// <summary>The framework's command ids and topics (the gate answers the commands itself).</summary>
    public static class Commands
    {
        /// <summary>Session tickets and resumes.</summary>
        public const uint Session = 0xFFFFFF00;
        /// <summary>The topic of the gate's <c>room_lost</c> push.</summary>
        public const uint RoomLost = 0xFFFFFF01;
        /// <summary>Keep-alive: answered with an empty frame.</summary>
        public const uint KeepAlive = 0xFFFFFF02;
        /// <summary>Log out: the gate ends the session at once and closes.</summary>
        public const uint Logout = 0xFFFFFF03;
        /// <summary>Hello: the connection's options (<c>{push_frames: true}</c>).</summary>
        public const uint Hello = 0xFFFFFF04;
        /// <summary>After hello, every push comes on this id: topic (4 bytes) then payload.</summary>
        public const uint PushFrame = 0xFFFFFF05;
        /// <summary>Error frames, unless the listener says otherwise.</summary>
        public const uint DefaultError = 0xFFFFFFFF;
    }

    /// <summary>Header values and limits of one listener (they must match its <c>listen:</c> entry).</summary>
    public sealed class FrameSettings
    {
        /// <summary>Header bytes 0-3. Default 00 00 00 00.</summary>
        public byte[] Magic { get; set; } = new byte[4];
        /// <summary>Header byte 4. Default 0.</summary>
        public byte ProtocolVersion { get; set; }
        /// <summary>Header bytes 5-8. Default 0.</summary>
        public uint ServerVersion { get; set; }
        /// <summary>Command id of error frames. Default 0xFFFFFFFF.</summary>
        public uint ErrorCommand { get; set; } = Commands.DefaultError;
        /// <summary>Largest payload accepted from the server. Default 16 MiB.</summary>
        public int MaxFrame { get; set; } = 16 << 20;
    }

    /// <summary>The server sent bytes that are not a frame for these settings.</summary>
    public sealed class FrameException : IOException
    {
        public FrameException(string message) : base(message) { }
    }

    /// <summary>One frame.</summary>
    internal struct Frame
    {
        public uint Command;
        public byte[] Payload;
    }

    /// <summary>Encoder and incremental decoder for one listener's header values.</summary>
    internal sealed class FrameCodec
    {
        public const int HeaderLength = 17;
        readonly FrameSettings settings;
        byte[] buf = new byte[0];
        int start, end;

        public FrameCodec(FrameSettings settings)
        {
            if (settings.Magic == null || settings.Magic.Length != 4)
                throw new ArgumentException("FrameSettings.Magic must be 4 bytes");
            if (settings.MaxFrame < 0) throw new ArgumentException("FrameSettings.MaxFrame is negative");
            this.settings = settings;
        }

        public uint ErrorCommand => settings.ErrorCommand;

        public byte[] Encode(uint command, byte[] payload)
        {
            var frame = new byte[HeaderLength + payload.Length];
            Buffer.BlockCopy(settings.Magic, 0, frame, 0, 4);
            frame[4] = settings.ProtocolVersion;
            Put(frame, 5, settings.ServerVersion);
            Put(frame, 9, (uint)payload.Length + 4);
            Put(frame, 13, command);
            Buffer.BlockCopy(payload, 0, frame, HeaderLength, payload.Length);
            return frame;
        }

        /// <summary>Appends received bytes and adds every frame now complete to <paramref name="frames"/>.
        /// Throws a <see cref="FrameException"/> on a bad header.</summary>
        public void Feed(byte[] bytes, int count, List<Frame> frames)
        {
            if (end + count > buf.Length)
            {
                var live = end - start;
                var size = Math.Max(buf.Length, 4096);
                while (size < live + count) size *= 2;
                var next = size == buf.Length ? buf : new byte[size];
                Buffer.BlockCopy(buf, start, next, 0, live);
                buf = next;
                start = 0;
                end = live;
            }
            Buffer.BlockCopy(bytes, 0, buf, end, count);
            end += count;
            while (end - start >= HeaderLength)
            {
                for (var i = 0; i < 4; i++)
                    if (buf[start + i] != settings.Magic[i]) throw new FrameException("frame header: magic differs");
                if (buf[start + 4] != settings.ProtocolVersion || Get(buf, start + 5) != settings.ServerVersion)
                    throw new FrameException("frame header: version differs");
                var length = Get(buf, start + 9);
                if (length < 4) throw new FrameException($"frame length {length} is below 4");
                if (length - 4 > (uint)settings.MaxFrame)
                    throw new FrameException($"frame of {length - 4} bytes exceeds {settings.MaxFrame}");
                var total = HeaderLength + (int)(length - 4);
                if (end - start < total) break;
                var payload = new byte[total - HeaderLength];
                Buffer.BlockCopy(buf, start + HeaderLength, payload, 0, payload.Length);
                frames.Add(new Frame { Command = Get(buf, start + 13), Payload = payload });
                start += total;
            }
            if (start == end)
            {
                start = end = 0;
                if (buf.Length > 1 << 20) buf = new byte[0];
            }
        }

        /// <summary>Forgets a partly received frame (after a reconnect).</summary>
        public void Reset()
        {
            start = end = 0;
            buf = new byte[0];
        }

        internal static void Put(byte[] b, int at, uint v)
        {
            b[at] = (byte)(v >> 24);
            b[at + 1] = (byte)(v >> 16);
            b[at + 2] = (byte)(v >> 8);
            b[at + 3] = (byte)v;
        }

        internal static uint Get(byte[] b, int at)
        {
            return ((uint)b[at] << 24) | ((uint)b[at + 1] << 16) | ((uint)b[at + 2] << 8) | b[at + 3];
        }
    }
}
