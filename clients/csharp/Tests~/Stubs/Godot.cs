// The few Godot types Examples~/Godot/Matchmaker.cs uses, so the test can compile it without
// Godot (the real ones come from GodotSharp).
namespace Godot
{
    public class Node
    {
        public virtual void _Ready() { }
        public virtual void _Process(double delta) { }
        public virtual void _ExitTree() { }
    }

    public static class GD
    {
        public static void Print(object what) { System.Console.WriteLine(what); }
        public static void PrintErr(object what) { System.Console.Error.WriteLine(what); }
    }
}
