namespace TauCluster.Grains;

public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// The plain chat template every TauCluster front end shares (HTTP, IChatClient, <c>tau chat</c>):
/// <code>
/// System: …\n
/// User: …\n
/// Assistant:…\n      (the reply exactly as generated)
/// Assistant:
/// </code>
/// A reply stops at <see cref="TurnStop"/>, the start of the next user turn. A reply sent back verbatim renders to
/// the text the session already holds, so a follow-up request only prefills its new turn; where a reply was cut
/// (another stop sequence), the session keeps what still agrees and forgets the rest.
/// </summary>
public static class ChatTemplate
{
    public const string TurnStop = "\nUser:";

    public static string Render(IEnumerable<ChatTurn> turns)
    {
        var text = new System.Text.StringBuilder();
        foreach (var turn in turns)
        {
            string role = turn.Role.ToLowerInvariant() switch
            {
                "system" or "developer" => "System",
                "user" => "User",
                "assistant" => "Assistant",
                _ => throw new Engine.InvalidOptionsException($"unknown message role '{turn.Role}' (system, user or assistant)"),
            };
            // A reply is whatever the model wrote after "Assistant:", so it goes back verbatim; other turns get one space.
            text.Append(role).Append(role == "Assistant" ? ":" : ": ").Append(turn.Content).Append('\n');
        }
        return text.Append("Assistant:").ToString();
    }
}
