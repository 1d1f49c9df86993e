// The codecs alone: MessagePack against the spec's encodings (the server's payloads are checked
// in Requests), and the frame header against the README's example.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Threading.Tasks;

namespace Firefly.Client.Tests
{
    static class Codec
    {
        sealed class Typed : IMsgPackValue
        {
            public object ToMsgPack()
            {
                return new Dictionary<string, object> { { "a", 1 } };
            }
        }

        static byte[] Hex(string hex)
        {
            hex = hex.Replace(" ", "");
            return Enumerable.Range(0, hex.Length / 2).Select(i => Convert.ToByte(hex.Substring(2 * i, 2), 16)).ToArray();
        }

        public static void Register(List<KeyValuePair<string, Func<Task>>> tests)
        {
            tests.Add(new KeyValuePair<string, Func<Task>>("codec_msgpack_encodings", () =>
            {
                var cases = new List<(object, string)>
                {
                    (null, "c0"), (true, "c3"), (false, "c2"),
                    (0, "00"), (127, "7f"), (128, "cc80"), (255, "ccff"), (256, "cd0100"), (65536, "ce00010000"),
                    (1L << 32, "cf0000000100000000"), (ulong.MaxValue, "cfffffffffffffffff"),
                    (-1, "ff"), (-32, "e0"), (-33, "d0df"), (-129, "d1ff7f"), (-32769, "d2ffff7fff"),
                    (long.MinValue, "d38000000000000000"), ((byte)7, "07"), ((ushort)300, "cd012c"),
                    (1.5, "cb3ff8000000000000"), (1.5f, "ca3fc00000"),
                    ("", "a0"), ("abc", "a3616263"), (new string('x', 32), "d920" + string.Concat(Enumerable.Repeat("78", 32))),
                    ("é", "a2c3a9"), (new byte[] { 1, 2 }, "c4020102"),
                    (new List<object> { 1, "a" }, "9201a161"), (new[] { 1, 2, 3 }, "93010203"),
                    (new Dictionary<string, object> { { "a", 1 } }, "81a16101"),
                    (new Typed(), "81a16101"), (new MsgPackExt(5, new byte[] { 9 }), "d40509"),
                };
                foreach (var pair in cases)
                {
                    var value = pair.Item1;
                    var hex = pair.Item2;
                    Assert.Bytes(Hex(hex), MsgPack.Encode(value), $"encode {value}");
                    var back = MsgPack.Decode(Hex(hex));
                    if (value is int || value is long || value is byte || value is ushort)
                        Assert.Equal(Convert.ToInt64(value), (long)back, $"decode {hex}");
                }
                var big = new string('y', 70000);
                Assert.Equal(big, (string)MsgPack.Decode(MsgPack.Encode(big)), "str32 round trip");
                var bin = new byte[70000];
                Assert.Equal(70000, ((byte[])MsgPack.Decode(MsgPack.Encode(bin))).Length, "bin32 round trip");
                var many = Enumerable.Range(0, 70000).Cast<object>().ToList();
                Assert.Equal(69999L, (long)((List<object>)MsgPack.Decode(MsgPack.Encode(many)))[69999], "array32 round trip");
                return Task.CompletedTask;
            }));

            tests.Add(new KeyValuePair<string, Func<Task>>("codec_msgpack_decoded_types", () =>
            {
                Assert.Equal(ulong.MaxValue, (ulong)MsgPack.Decode(Hex("cfffffffffffffffff")), "uint64 past long");
                Assert.Equal(long.MaxValue, (long)MsgPack.Decode(Hex("cf7fffffffffffffff")), "uint64 within long is a long");
                Assert.Equal(-2L, (long)MsgPack.Decode(Hex("d3fffffffffffffffe")), "int64");
                Assert.Equal(1.5, (double)MsgPack.Decode(Hex("ca3fc00000")), "float32 widened");
                var map = MsgPack.Decode(Hex("82a16101a162c0"));
                Assert.True(map is Dictionary<string, object>, "string keys give Dictionary<string, object>");
                Assert.Equal(null, MsgPack.Get(map, "b"), "nil value");
                var intKeys = MsgPack.Decode(Hex("810102"));
                Assert.True(intKeys is Dictionary<object, object> d && (long)d[1L] == 2, "other keys give Dictionary<object, object>");
                Assert.Equal(7UL, MsgPack.ToUInt64(7L), "ToUInt64");
                Assert.Equal(3u, MsgPack.ToUInt32(3L), "ToUInt32");
                Assert.Bytes(new byte[] { 1, 255 }, MsgPack.ToBytes(MsgPack.Decode(Hex("9201ccff"))), "ToBytes from an array");
                Assert.Bytes(new byte[] { 1, 255 }, MsgPack.ToBytes(MsgPack.Decode(Hex("c40201ff"))), "ToBytes from a bin");
                foreach (var bad in new[] { "", "a3 61", "92 01", "c1", "dd ffffffff 01", "df ffffffff", "cb 00" })
                {
                    try
                    {
                        MsgPack.Decode(Hex(bad));
                        throw new Exception($"decoding {bad} should fail");
                    }
                    catch (MsgPackException)
                    {
                    }
                }
                try
                {
                    MsgPack.Decode(Hex("0101"));
                    throw new Exception("trailing bytes should fail");
                }
                catch (MsgPackException)
                {
                }
                try
                {
                    MsgPack.Encode(new object());
                    throw new Exception("encoding an object should fail");
                }
                catch (MsgPackException)
                {
                }
                return Task.CompletedTask;
            }));

            tests.Add(new KeyValuePair<string, Func<Task>>("codec_frames_match_the_readme", () =>
            {
                var codec = new FrameCodec(new FrameSettings());
                var frame = codec.Encode(1, Encoding.ASCII.GetBytes("asdfe"));
                Assert.Equal("0000000000000000000000000900000001" + "6173646665", Assert.Hex(frame), "README example");
                var stream = frame.Concat(codec.Encode(Commands.PushFrame, new byte[] { 0, 0, 3, 132, 7 })).ToArray();
                var frames = new List<Frame>();
                foreach (var b in stream) codec.Feed(new[] { b }, 1, frames);
                Assert.Equal(2, frames.Count, "frames fed byte by byte");
                Assert.Equal(Commands.PushFrame, frames[1].Command, "second command");
                var bad = new FrameCodec(new FrameSettings { Magic = new byte[] { 1, 2, 3, 4 } });
                try
                {
                    bad.Feed(frame, frame.Length, frames);
                    throw new Exception("a frame with other magic bytes should fail");
                }
                catch (FrameException e)
                {
                    Assert.True(e.Message.Contains("magic"), "names the magic bytes: " + e.Message);
                }
                return Task.CompletedTask;
            }));
        }
    }
}
