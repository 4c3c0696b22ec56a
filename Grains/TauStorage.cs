using Orleans.Runtime;
using Orleans.Serialization;
using Orleans.Storage;

namespace TauCluster.Grains;

public static class TauStorage
{
    /// <summary>The grain storage provider every TauCluster grain persists to.</summary>
    public const string Name = "tau";
}

/// <summary>
/// Grain state in files, one per grain, written atomically (temp file + rename) with Orleans' binary serializer.
/// It survives the silo process, so an embedded <c>tau</c> keeps its sessions between runs and silos on one
/// machine share them (the TestingHost failover tests rely on that); a cluster across machines uses Redis.
/// </summary>
public sealed class FileGrainStorage(string directory, Serializer serializer) : IGrainStorage
{
    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        if (!File.Exists(path))
        {
            grainState.RecordExists = false;
            return;
        }
        var bytes = await File.ReadAllBytesAsync(path);
        grainState.State = serializer.Deserialize<T>(bytes);
        grainState.RecordExists = true;
        grainState.ETag = File.GetLastWriteTimeUtc(path).Ticks.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
        await File.WriteAllBytesAsync(temporary, serializer.SerializeToArray(grainState.State));
        File.Move(temporary, path, overwrite: true);
        grainState.RecordExists = true;
        grainState.ETag = File.GetLastWriteTimeUtc(path).Ticks.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        File.Delete(PathOf(stateName, grainId));
        grainState.RecordExists = false;
        grainState.ETag = null;
        return Task.CompletedTask;
    }

    private string PathOf(string stateName, GrainId grainId) =>
        Path.Combine(directory, Uri.EscapeDataString(stateName), Uri.EscapeDataString(grainId.ToString()) + ".bin");
}
