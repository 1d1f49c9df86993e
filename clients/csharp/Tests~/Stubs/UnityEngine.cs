// The few Unity types the main README's MonoBehaviour example uses, so the test can compile
// that example without Unity (the real ones come from UnityEngine.dll). `Debug` also keeps what
// was logged, for the runner that plays the example against a cluster.
namespace UnityEngine
{
    public class Object { }

    public class MonoBehaviour : Object { }

    public static class Debug
    {
        public static readonly System.Collections.Generic.List<string> Logged = new System.Collections.Generic.List<string>();

        public static void Log(object message) { Keep("log: " + message); }
        public static void LogWarning(object message) { Keep("warning: " + message); }
        public static void LogError(object message) { Keep("error: " + message); }

        static void Keep(string line)
        {
            lock (Logged) Logged.Add(line);
            System.Console.WriteLine("[unity] " + line);
        }
    }

    public static class PlayerPrefs
    {
        public static string GetString(string key, string defaultValue) { return defaultValue; }
        public static void SetString(string key, string value) { }
        public static void DeleteKey(string key) { }
        public static void Save() { }
    }
}
