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
/// <para>
/// Writes are conditional, as in Orleans' own providers: each file starts with the ETag of the write that made it (a
/// fresh GUID, so no two writes share one), and a write or clear whose <see cref="IGrainState{T}.ETag"/> is not the
/// file's current one fails with <see cref="InconsistentStateException"/> instead of overwriting a newer state. The
/// check and the rename happen under an exclusive lock that holds across processes: one of 64 lock files in
/// <c>.locks/</c> (a grain's by a hash of its path), so that their number stays fixed however many grains come and go.
/// </para>
/// </summary>
public sealed class FileGrainStorage(string directory, Serializer serializer) : IGrainStorage
{
    private static ReadOnlySpan<byte> Magic => "TAUS"u8;
    private const int HeaderBytes = 4 + 16;
    private const int LockStripes = 64;
    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(30);

    /// <summary>One writer at a time per stripe within this process; its lock file orders writers across processes.</summary>
    private readonly SemaphoreSlim[] writers = Enumerable.Range(0, LockStripes).Select(_ => new SemaphoreSlim(1, 1)).ToArray();

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var path = PathOf(stateName, grainId);
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            grainState.RecordExists = false;
            grainState.ETag = null;
            return;
        }
        var (etag, payload) = Split(bytes, path);
        grainState.State = serializer.Deserialize<T>(payload);
        grainState.RecordExists = true;
        grainState.ETag = etag;
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        Conditionally(stateName, grainId, grainState.ETag, "write", async path =>
        {
            var etag = Guid.NewGuid();
            var payload = serializer.SerializeToArray(grainState.State);
            var bytes = new byte[HeaderBytes + payload.Length];
            Magic.CopyTo(bytes);
            etag.TryWriteBytes(bytes.AsSpan(4, 16));
            payload.CopyTo(bytes.AsSpan(HeaderBytes));
            var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            await File.WriteAllBytesAsync(temporary, bytes);
            File.Move(temporary, path, overwrite: true);
            grainState.RecordExists = true;
            grainState.ETag = etag.ToString("N");
        });

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        Conditionally(stateName, grainId, grainState.ETag, "clear", path =>
        {
            File.Delete(path);
            grainState.RecordExists = false;
            grainState.ETag = null;
            return Task.CompletedTask;
        });

    /// <summary>Runs <paramref name="change"/> if the file's ETag is still <paramref name="expected"/> (null: no file).</summary>
    private async Task Conditionally(string stateName, GrainId grainId, string? expected, string what, Func<string, Task> change)
    {
        var path = PathOf(stateName, grainId);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        int stripe = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(path))[0] % LockStripes;   // the same in every process
        var writer = writers[stripe];
        await writer.WaitAsync();
        try
        {
            var locks = Directory.CreateDirectory(Path.Combine(directory, ".locks")).FullName;
            using var fileLock = await LockFile(Path.Combine(locks, $"{stripe:x2}.lock"));
            var current = CurrentETag(path);
            if (current != expected)
                throw new InconsistentStateException(
                    $"stale {what} of {grainId} ({stateName}): its state was written since it was read (ETag {expected ?? "none"}, now {current ?? "none"})",
                    current ?? "", expected ?? "");
            await change(path);
        }
        finally
        {
            writer.Release();
        }
    }

    private static string? CurrentETag(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            Span<byte> header = stackalloc byte[HeaderBytes];
            int read = file.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false);
            return HeaderETag(header[..read]) ?? LegacyETag(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    private static (string ETag, ReadOnlyMemory<byte> Payload) Split(byte[] bytes, string path) =>
        HeaderETag(bytes) is { } etag
            ? (etag, bytes.AsMemory(HeaderBytes))
            : (LegacyETag(path), bytes);   // written before ETags: the first write replaces it with a headed file

    /// <summary>The ETag a file's header holds, or null for a file without one (written before ETags).</summary>
    private static string? HeaderETag(ReadOnlySpan<byte> bytes) =>
        bytes.Length >= HeaderBytes && bytes[..4].SequenceEqual(Magic) ? new Guid(bytes.Slice(4, 16)).ToString("N") : null;

    private static string LegacyETag(string path)
    {
        var info = new FileInfo(path);
        return $"legacy-{info.Length}-{info.LastWriteTimeUtc.Ticks}";
    }

    /// <summary>
    /// An exclusive lock on <paramref name="path"/> (FileShare.None is an exclusive flock on Unix), retried until it is
    /// free: held only for a check and a rename, so waits are short.
    /// </summary>
    private static async Task<FileStream> LockFile(string path)
    {
        var deadline = DateTime.UtcNow + LockTimeout;
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(Math.Min(1 + attempt, 20));
            }
        }
    }

    private string PathOf(string stateName, GrainId grainId) =>
        Path.Combine(directory, Uri.EscapeDataString(stateName), Uri.EscapeDataString(grainId.ToString()) + ".bin");
}
