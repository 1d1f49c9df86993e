using System;
using System.IO;

namespace Firefly.Client
{
    /// <summary>The server answered with an error frame. <see cref="Code"/> is e.g. <c>unknown_command</c>,
    /// <c>bad_request</c>, <c>timeout</c>, <c>resume_failed</c>, <c>kicked</c> or a module's own code;
    /// <see cref="Module"/>/<see cref="Version"/> name the module version that served the request.
    /// <see cref="Exception.Message"/> is the server's text without the code; <c>ToString()</c> starts
    /// with <c>FireflyException: &lt;code&gt;: &lt;message&gt;</c>.</summary>
    public sealed class FireflyException : Exception
    {
        public FireflyException(uint command, string code, string message, string module = null, long? version = null)
            : base(message)
        {
            Command = command;
            Code = code;
            Module = module;
            Version = version;
        }

        /// <summary>The command the error answers (0 for a kick or a connection-level error).</summary>
        public uint Command { get; }
        public string Code { get; }
        /// <summary>The module that served the request, if one did.</summary>
        public string Module { get; }
        /// <summary>That module's version, if one served the request.</summary>
        public long? Version { get; }

        public override string ToString()
        {
            return $"FireflyException: {Code}: {Message}";
        }

        internal static FireflyException FromPayload(byte[] payload)
        {
            try
            {
                var map = MsgPack.ToMap(MsgPack.Decode(payload));
                object command, code, message, module, version;
                map.TryGetValue("command", out command);
                map.TryGetValue("code", out code);
                map.TryGetValue("message", out message);
                map.TryGetValue("module", out module);
                map.TryGetValue("version", out version);
                return new FireflyException(
                    command == null ? 0 : MsgPack.ToUInt32(command),
                    code as string ?? "internal",
                    message as string ?? "",
                    module as string,
                    version == null ? (long?)null : MsgPack.ToInt64(version));
            }
            catch (Exception e) when (e is MsgPackException || e is InvalidCastException)
            {
                return new FireflyException(0, "internal", "unreadable error frame: " + e.Message);
            }
        }
    }

    /// <summary>No reply within the request's timeout. Its reply, if it ever comes, is dropped.</summary>
    public sealed class RequestTimeoutException : TimeoutException
    {
        public RequestTimeoutException(uint command, TimeSpan timeout)
            : base($"no reply to command {command} within {(long)timeout.TotalMilliseconds} ms")
        {
            Command = command;
            Timeout = timeout;
        }

        public uint Command { get; }
        public TimeSpan Timeout { get; }
    }

    /// <summary>The connection dropped (or the client was closed) before the reply came: the request
    /// may or may not have run on the server.</summary>
    public class ConnectionException : IOException
    {
        public ConnectionException(string message, Exception inner = null) : base(message, inner) { }
    }

    /// <summary>The connection could not be opened; the message names the address and the cause.</summary>
    public sealed class ConnectionFailedException : ConnectionException
    {
        public ConnectionFailedException(string message, Exception inner = null) : base(message, inner) { }
    }
}
