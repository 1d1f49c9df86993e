// Ends a test program at once with its exit code, skipping Mono's runtime shutdown. Mono aborts
// its background threads at shutdown; when the abort lands while System.Threading.Timer's
// scheduler thread sorts its timers (a timer or Task.Delay was just disposed or started), the
// abort comes out as an unhandled InvalidOperationException and the process fails after every
// test passed. Nothing here needs the shutdown: output is flushed first.
using System;
using System.Runtime.InteropServices;

namespace Firefly.Client.Tests
{
    static class ProcessExit
    {
        [DllImport("libc", EntryPoint = "_exit")]
        static extern void LibcExit(int code);

        public static int Now(int code)
        {
            Console.Out.Flush();
            Console.Error.Flush();
            LibcExit(code);
            return code;
        }
    }
}
