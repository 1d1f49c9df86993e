// A Godot 4 .NET node: connects, logs in with `accounts`, queues in `matchmaking`, and prints the
// match it is pushed. Add clients/csharp/Runtime/*.cs to the game's .csproj (see the README),
// attach this script to a node, and run the default topology (`firefly up`).
using System.Collections.Generic;
using Firefly.Client;
using Godot;

public partial class Matchmaker : Node
{
    FireflyClient client;

    public override async void _Ready()
    {
        try
        {
            client = await FireflyClient.ConnectWebSocketAsync("ws://127.0.0.1:11010/");
        }
        catch (ConnectionException e)
        {
            GD.PrintErr(e.Message);
            return;
        }
        client.OnPush(4801, (matched, raw) =>
            GD.Print($"matched in room {MsgPack.Get(matched, "room")} with {MsgPack.ToList(MsgPack.Get(matched, "players")).Count} players"));
        client.Lost += reason => GD.Print($"session lost ({reason}): log in again");
        var credentials = new Dictionary<string, object> { { "username", "godot-player" }, { "password", "correct horse" } };
        try
        {
            await client.RequestAsync(201, credentials); // register (once)
        }
        catch (FireflyException e) when (e.Code == "username_taken")
        {
        }
        await client.RequestAsync(202, credentials); // log in
        var queued = await client.RequestAsync(481, new Dictionary<string, object> { { "mode", "duel" }, { "rating", 1200 } });
        GD.Print($"queued: {queued} players waiting");
    }

    // Replies and pushes run here, on the main thread.
    public override void _Process(double delta) => client?.DispatchPending();

    public override void _ExitTree() => client?.Close();
}
