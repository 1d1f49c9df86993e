// MessagePack, written here: Debian ships no maintained C# MessagePack library and NuGet is out
// of reach where this is built, and a game client needs only the spec's core (no reflection,
// so nothing for IL2CPP to strip or fail to compile ahead of time).
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Firefly.Client
{
    /// <summary>A typed payload: <see cref="MsgPack.Encode"/> encodes <see cref="ToMsgPack"/> in its place.</summary>
    public interface IMsgPackValue
    {
        /// <summary>The value to encode instead of this object (a dictionary, a list, a number...).</summary>
        object ToMsgPack();
    }

    /// <summary>A MessagePack extension value (type and raw data).</summary>
    public sealed class MsgPackExt
    {
        public MsgPackExt(sbyte type, byte[] data)
        {
            Type = type;
            Data = data;
        }

        public sbyte Type { get; }
        public byte[] Data { get; }
    }

    /// <summary>Bytes that are not MessagePack, or a value that cannot be encoded.</summary>
    public sealed class MsgPackException : Exception
    {
        public MsgPackException(string message) : base(message) { }
    }

    /// <summary>MessagePack encoding and decoding of plain values (see the README's "Payloads").</summary>
    public static partial class MsgPack
    {
        const int MaxDepth = 512;

        /// <summary>Encodes a value as MessagePack.</summary>
        public static byte[] Encode(object value)
        {
            var w = new Writer();
            w.Write(value, 0);
            return w.ToArray();
        }

        /// <summary>Decodes one MessagePack value that spans all of <paramref name="bytes"/>.</summary>
        public static object Decode(byte[] bytes)
        {
            return Decode(bytes, 0, bytes.Length);
        }

        /// <summary>Decodes one MessagePack value that spans <paramref name="count"/> bytes from <paramref name="offset"/>.</summary>
        public static object Decode(byte[] bytes, int offset, int count)
        {
            var r = new Reader(bytes, offset, count);
            var value = r.Read(0);
            if (r.Position != offset + count)
                throw new MsgPackException($"{offset + count - r.Position} bytes after the MessagePack value");
            return value;
        }

        sealed class Writer
        {
            byte[] buf = new byte[64];
            int len;

            public byte[] ToArray()
            {
                var out_ = new byte[len];
                Buffer.BlockCopy(buf, 0, out_, 0, len);
                return out_;
            }

            void Room(int n)
            {
                if (len + n <= buf.Length) return;
                var size = buf.Length * 2;
                while (size < len + n) size *= 2;
                Array.Resize(ref buf, size);
            }

            void Byte(byte b)
            {
                Room(1);
                buf[len++] = b;
            }

            void Big(ulong v, int bytes)
            {
                Room(bytes);
                for (var i = bytes - 1; i >= 0; i--) buf[len++] = (byte)(v >> (8 * i));
            }

            void Raw(byte[] b)
            {
                Room(b.Length);
                Buffer.BlockCopy(b, 0, buf, len, b.Length);
                len += b.Length;
            }

            void Unsigned(ulong v)
            {
                if (v < 0x80) Byte((byte)v);
                else if (v <= 0xFF) { Byte(0xCC); Big(v, 1); }
                else if (v <= 0xFFFF) { Byte(0xCD); Big(v, 2); }
                else if (v <= 0xFFFFFFFF) { Byte(0xCE); Big(v, 4); }
                else { Byte(0xCF); Big(v, 8); }
            }

            void Signed(long v)
            {
                if (v >= 0) Unsigned((ulong)v);
                else if (v >= -32) Byte((byte)(sbyte)v);
                else if (v >= sbyte.MinValue) { Byte(0xD0); Big((ulong)v, 1); }
                else if (v >= short.MinValue) { Byte(0xD1); Big((ulong)v, 2); }
                else if (v >= int.MinValue) { Byte(0xD2); Big((ulong)v, 4); }
                else { Byte(0xD3); Big((ulong)v, 8); }
            }

            void Header(int n, byte fix, int fixMax, byte b16, byte b32)
            {
                if (n <= fixMax) Byte((byte)(fix | n));
                else if (n <= 0xFFFF) { Byte(b16); Big((ulong)n, 2); }
                else { Byte(b32); Big((ulong)n, 4); }
            }

            public void Write(object value, int depth)
            {
                if (depth > MaxDepth) throw new MsgPackException("value nested too deeply (a cycle?)");
                if (value == null) { Byte(0xC0); return; }
                if (value is bool b) { Byte(b ? (byte)0xC3 : (byte)0xC2); return; }
                if (value is int i32) { Signed(i32); return; }
                if (value is long i64) { Signed(i64); return; }
                if (value is uint u32) { Unsigned(u32); return; }
                if (value is ulong u64) { Unsigned(u64); return; }
                if (value is byte u8) { Unsigned(u8); return; }
                if (value is sbyte i8) { Signed(i8); return; }
                if (value is short i16) { Signed(i16); return; }
                if (value is ushort u16) { Unsigned(u16); return; }
                if (value is char c) { Unsigned(c); return; }
                if (value is float f)
                {
                    Byte(0xCA);
                    Big((uint)BitConverter.SingleToInt32Bits(f), 4);
                    return;
                }
                if (value is double d)
                {
                    Byte(0xCB);
                    Big((ulong)BitConverter.DoubleToInt64Bits(d), 8);
                    return;
                }
                if (value is decimal m) { Write((double)m, depth); return; }
                if (value is string s)
                {
                    var utf8 = Encoding.UTF8.GetBytes(s);
                    if (utf8.Length < 32) Byte((byte)(0xA0 | utf8.Length));
                    else if (utf8.Length <= 0xFF) { Byte(0xD9); Big((ulong)utf8.Length, 1); }
                    else if (utf8.Length <= 0xFFFF) { Byte(0xDA); Big((ulong)utf8.Length, 2); }
                    else { Byte(0xDB); Big((ulong)utf8.Length, 4); }
                    Raw(utf8);
                    return;
                }
                if (value is byte[] bin)
                {
                    if (bin.Length <= 0xFF) { Byte(0xC4); Big((ulong)bin.Length, 1); }
                    else if (bin.Length <= 0xFFFF) { Byte(0xC5); Big((ulong)bin.Length, 2); }
                    else { Byte(0xC6); Big((ulong)bin.Length, 4); }
                    Raw(bin);
                    return;
                }
                if (value is ArraySegment<byte> seg)
                {
                    var copy = new byte[seg.Count];
                    if (seg.Count > 0) Buffer.BlockCopy(seg.Array, seg.Offset, copy, 0, seg.Count);
                    Write(copy, depth);
                    return;
                }
                if (value is MsgPackExt ext) { WriteExt(ext); return; }
                if (value is IMsgPackValue typed) { Write(typed.ToMsgPack(), depth + 1); return; }
                if (value is Enum) { Write(Convert.ToInt64(value), depth); return; }
                if (value is IDictionary map)
                {
                    Header(map.Count, 0x80, 15, 0xDE, 0xDF);
                    var it = map.GetEnumerator();
                    while (it.MoveNext())
                    {
                        Write(it.Key, depth + 1);
                        Write(it.Value, depth + 1);
                    }
                    return;
                }
                if (value is ICollection list)
                {
                    Header(list.Count, 0x90, 15, 0xDC, 0xDD);
                    foreach (var item in list) Write(item, depth + 1);
                    return;
                }
                if (value is IEnumerable seq)
                {
                    var items = new List<object>();
                    foreach (var item in seq) items.Add(item);
                    Write(items, depth);
                    return;
                }
                throw new MsgPackException($"cannot encode a {value.GetType().FullName} as MessagePack (implement IMsgPackValue)");
            }

            void WriteExt(MsgPackExt ext)
            {
                var n = ext.Data.Length;
                switch (n)
                {
                    case 1: Byte(0xD4); break;
                    case 2: Byte(0xD5); break;
                    case 4: Byte(0xD6); break;
                    case 8: Byte(0xD7); break;
                    case 16: Byte(0xD8); break;
                    default:
                        if (n <= 0xFF) { Byte(0xC7); Big((ulong)n, 1); }
                        else if (n <= 0xFFFF) { Byte(0xC8); Big((ulong)n, 2); }
                        else { Byte(0xC9); Big((ulong)n, 4); }
                        break;
                }
                Byte((byte)ext.Type);
                Raw(ext.Data);
            }
        }

        sealed class Reader
        {
            readonly byte[] buf;
            readonly int end;
            public int Position;

            public Reader(byte[] bytes, int offset, int count)
            {
                if (offset < 0 || count < 0 || offset + count > bytes.Length)
                    throw new ArgumentOutOfRangeException(nameof(count));
                buf = bytes;
                Position = offset;
                end = offset + count;
            }

            void Need(long n)
            {
                if (n < 0 || end - Position < n)
                    throw new MsgPackException($"MessagePack value truncated at byte {Position}");
            }

            ulong Big(int bytes)
            {
                Need(bytes);
                ulong v = 0;
                for (var i = 0; i < bytes; i++) v = (v << 8) | buf[Position++];
                return v;
            }

            byte[] Bytes(long n)
            {
                Need(n);
                var b = new byte[n];
                Buffer.BlockCopy(buf, Position, b, 0, (int)n);
                Position += (int)n;
                return b;
            }

            string Str(long n)
            {
                Need(n);
                string s;
                try
                {
                    s = new UTF8Encoding(false, true).GetString(buf, Position, (int)n);
                }
                catch (ArgumentException)
                {
                    throw new MsgPackException($"a MessagePack string at byte {Position} is not UTF-8");
                }
                Position += (int)n;
                return s;
            }

            public object Read(int depth)
            {
                if (depth > MaxDepth) throw new MsgPackException("MessagePack value nested too deeply");
                Need(1);
                var b = buf[Position++];
                if (b <= 0x7F) return (long)b;
                if (b >= 0xE0) return (long)(sbyte)b;
                if (b >= 0xA0 && b <= 0xBF) return Str(b & 0x1F);
                if (b >= 0x90 && b <= 0x9F) return Array(b & 0x0F, depth);
                if (b >= 0x80 && b <= 0x8F) return Map(b & 0x0F, depth);
                switch (b)
                {
                    case 0xC0: return null;
                    case 0xC2: return false;
                    case 0xC3: return true;
                    case 0xC4: return Bytes((long)Big(1));
                    case 0xC5: return Bytes((long)Big(2));
                    case 0xC6: return Bytes((long)Big(4));
                    case 0xC7: return Ext((long)Big(1));
                    case 0xC8: return Ext((long)Big(2));
                    case 0xC9: return Ext((long)Big(4));
                    case 0xCA: return (double)BitConverter.Int32BitsToSingle((int)(uint)Big(4));
                    case 0xCB: return BitConverter.Int64BitsToDouble((long)Big(8));
                    case 0xCC: return (long)Big(1);
                    case 0xCD: return (long)Big(2);
                    case 0xCE: return (long)Big(4);
                    case 0xCF:
                        var u = Big(8);
                        return u <= long.MaxValue ? (object)(long)u : u;
                    case 0xD0: return (long)(sbyte)Big(1);
                    case 0xD1: return (long)(short)Big(2);
                    case 0xD2: return (long)(int)Big(4);
                    case 0xD3: return (long)Big(8);
                    case 0xD4: return Ext(1);
                    case 0xD5: return Ext(2);
                    case 0xD6: return Ext(4);
                    case 0xD7: return Ext(8);
                    case 0xD8: return Ext(16);
                    case 0xD9: return Str((long)Big(1));
                    case 0xDA: return Str((long)Big(2));
                    case 0xDB: return Str((long)Big(4));
                    case 0xDC: return Array((long)Big(2), depth);
                    case 0xDD: return Array((long)Big(4), depth);
                    case 0xDE: return Map((long)Big(2), depth);
                    case 0xDF: return Map((long)Big(4), depth);
                }
                throw new MsgPackException($"0x{b:X2} at byte {Position - 1} is not a MessagePack type");
            }

            MsgPackExt Ext(long n)
            {
                Need(1);
                var type = (sbyte)buf[Position++];
                return new MsgPackExt(type, Bytes(n));
            }

            List<object> Array(long n, int depth)
            {
                // Every element takes at least a byte: a huge count in a short buffer is refused
                // before anything is allocated for it.
                Need(n);
                var list = new List<object>((int)n);
                for (long i = 0; i < n; i++) list.Add(Read(depth + 1));
                return list;
            }

            object Map(long n, int depth)
            {
                Need(2 * n);
                var keys = new object[n];
                var values = new object[n];
                var allStrings = true;
                for (long i = 0; i < n; i++)
                {
                    keys[i] = Read(depth + 1);
                    values[i] = Read(depth + 1);
                    if (!(keys[i] is string)) allStrings = false;
                }
                if (allStrings)
                {
                    var map = new Dictionary<string, object>((int)n);
                    for (long i = 0; i < n; i++) map[(string)keys[i]] = values[i];
                    return map;
                }
                var any = new Dictionary<object, object>((int)n, KeyComparer.Instance);
                for (long i = 0; i < n; i++) any[keys[i] ?? NullKey.Instance] = values[i];
                return any;
            }
        }

        /// <summary>Stands for a nil map key (a dictionary cannot hold null keys).</summary>
        public sealed class NullKey
        {
            public static readonly NullKey Instance = new NullKey();
            NullKey() { }
        }

        /// <summary>Compares byte-array keys by content, other keys as usual.</summary>
        sealed class KeyComparer : IEqualityComparer<object>
        {
            public static readonly KeyComparer Instance = new KeyComparer();

            public new bool Equals(object a, object b)
            {
                if (a is byte[] x && b is byte[] y)
                {
                    if (x.Length != y.Length) return false;
                    for (var i = 0; i < x.Length; i++) if (x[i] != y[i]) return false;
                    return true;
                }
                return object.Equals(a, b);
            }

            public int GetHashCode(object o)
            {
                if (o is byte[] bytes)
                {
                    var h = 17;
                    foreach (var b in bytes) h = h * 31 + b;
                    return h;
                }
                return o == null ? 0 : o.GetHashCode();
            }
        }
    }
}
