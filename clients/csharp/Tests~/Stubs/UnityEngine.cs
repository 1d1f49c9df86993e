// The few Unity types the main README's MonoBehaviour example uses, so the test can compile
// that example without Unity (the real ones come from UnityEngine.dll).
namespace UnityEngine
{
    public class Object { }

    public class MonoBehaviour : Object { }

    public static class Debug
    {
        public static void Log(object message) { System.Console.WriteLine(message); }
        public static void LogWarning(object message) { System.Console.WriteLine(message); }
        public static void LogError(object message) { System.Console.Error.WriteLine(message); }
    }

    public static class PlayerPrefs
    {
        public static string GetString(string key, string defaultValue) { return defaultValue; }
        public static void SetString(string key, string value) { }
        public static void DeleteKey(string key) { }
        public static void Save() { }
    }
}
