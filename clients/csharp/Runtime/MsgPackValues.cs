using System;
using System.Collections.Generic;

namespace Firefly.Client
{
    /// <summary>Conversions of decoded values, for reading replies and pushes (and for typed clients).</summary>
    public static partial class MsgPack
    {
        /// <summary>A decoded integer (any width) as a long; throws if it is not one or does not fit.</summary>
        public static long ToInt64(object value)
        {
            if (value is long l) return l;
            if (value is ulong u && u <= long.MaxValue) return (long)u;
            if (value is int i) return i;
            if (value is uint ui) return ui;
            if (value is short s) return s;
            if (value is ushort us) return us;
            if (value is byte b) return b;
            if (value is sbyte sb) return sb;
            throw new MsgPackException($"expected an integer that fits a long, got {Describe(value)}");
        }

        /// <summary>A decoded integer (any width) as a ulong; throws if it is not one or is negative.</summary>
        public static ulong ToUInt64(object value)
        {
            if (value is ulong u) return u;
            var l = ToInt64(value);
            if (l < 0) throw new MsgPackException($"expected an unsigned integer, got {l}");
            return (ulong)l;
        }

        /// <summary>A decoded integer as an int (range-checked).</summary>
        public static int ToInt32(object value)
        {
            var l = ToInt64(value);
            if (l < int.MinValue || l > int.MaxValue) throw new MsgPackException($"{l} does not fit an int");
            return (int)l;
        }

        /// <summary>A decoded integer as a uint (range-checked).</summary>
        public static uint ToUInt32(object value)
        {
            var l = ToInt64(value);
            if (l < 0 || l > uint.MaxValue) throw new MsgPackException($"{l} does not fit a uint");
            return (uint)l;
        }

        /// <summary>A decoded number (float or integer) as a double.</summary>
        public static double ToDouble(object value)
        {
            if (value is double d) return d;
            if (value is float f) return f;
            if (value is ulong u) return u;
            return ToInt64(value);
        }

        /// <summary>A decoded boolean.</summary>
        public static bool ToBool(object value)
        {
            if (value is bool b) return b;
            throw new MsgPackException($"expected a boolean, got {Describe(value)}");
        }

        /// <summary>A decoded string (null stays null).</summary>
        public static string ToStr(object value)
        {
            if (value == null || value is string) return (string)value;
            throw new MsgPackException($"expected a string, got {Describe(value)}");
        }

        /// <summary>A decoded map with string keys (null stays null).</summary>
        public static Dictionary<string, object> ToMap(object value)
        {
            if (value == null || value is Dictionary<string, object>) return (Dictionary<string, object>)value;
            if (value is Dictionary<object, object> any && any.Count == 0) return new Dictionary<string, object>();
            throw new MsgPackException($"expected a map with string keys, got {Describe(value)}");
        }

        /// <summary>A decoded array (null stays null).</summary>
        public static List<object> ToList(object value)
        {
            if (value == null || value is List<object>) return (List<object>)value;
            throw new MsgPackException($"expected an array, got {Describe(value)}");
        }

        /// <summary>Decoded bytes: a MessagePack bin, or an array of integers 0-255 (how serde writes a
        /// <c>Vec&lt;u8&gt;</c> without <c>serde_bytes</c>). Null stays null.</summary>
        public static byte[] ToBytes(object value)
        {
            if (value == null || value is byte[]) return (byte[])value;
            if (value is List<object> list)
            {
                var bytes = new byte[list.Count];
                for (var i = 0; i < list.Count; i++)
                {
                    var b = ToInt64(list[i]);
                    if (b < 0 || b > 255) throw new MsgPackException($"{b} is not a byte");
                    bytes[i] = (byte)b;
                }
                return bytes;
            }
            throw new MsgPackException($"expected bytes, got {Describe(value)}");
        }

        /// <summary>The value of <paramref name="key"/> in a decoded map, or null when it is missing.</summary>
        public static object Get(object map, string key)
        {
            var m = ToMap(map);
            object value;
            return m != null && m.TryGetValue(key, out value) ? value : null;
        }

        static string Describe(object value)
        {
            return value == null ? "nil" : $"a {value.GetType().Name} ({value})";
        }
    }
}
